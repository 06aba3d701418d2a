"""The engine on AutoGen AgentChat: the only package of parley that imports autogen."""
