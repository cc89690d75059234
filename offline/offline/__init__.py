"""BeepGPT's offline side: what runs beside the four services, never inside them.

`training` fits the interest model and the reply linker, `evaluation` measures them on history
(alerts, interest, topics, conversations), `tables` reads exports and tables, `conversations`
lists a history's conversations, `forget` removes a person from every service's state. This
package imports the services' pure cores (the same query, features and rules the services run,
so history and live decide alike); no service imports it.
"""
