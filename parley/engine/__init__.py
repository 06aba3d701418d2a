"""The engine behind a conversation.

`parley.engine.autogen` is the one package that knows AutoGen: it builds a team from a spec, streams its turns,
and saves and loads its state. Nothing else in parley imports autogen.
"""
