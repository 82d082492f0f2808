import { StateGraph, MessagesAnnotation, START } from "@langchain/langgraph";
import { AIMessage } from "@langchain/core/messages";
import { AgentmemSaver } from "agentmem-langgraph";

const graph = new StateGraph(MessagesAnnotation)
  .addNode("bot", (s) => ({ messages: [new AIMessage(`you said ${s.messages.at(-1).content}`)] }))
  .addEdge(START, "bot")
  .compile({ checkpointer: new AgentmemSaver() });
const config = { configurable: { thread_id: "1" } };
await graph.invoke({ messages: [{ role: "user", content: "hello" }] }, config);
console.log((await graph.getState(config)).values.messages.at(-1).content);
