from typing import Annotated, TypedDict
from langgraph.graph import StateGraph, add_messages
from agentmem.langgraph import AgentmemSaver

class State(TypedDict):
    messages: Annotated[list, add_messages]

graph = StateGraph(State).add_node("bot", lambda s: {"messages": [("ai", f"you said {s['messages'][-1].content}")]})
graph = graph.set_entry_point("bot").compile(checkpointer=AgentmemSaver())
graph.invoke({"messages": [("user", "hello")]}, {"configurable": {"thread_id": "1"}})
print(graph.get_state({"configurable": {"thread_id": "1"}}).values["messages"][-1].content)
