// AgentmemSaver against LangGraph.js's checkpointer validation suite
// (@langchain/langgraph-checkpoint-validation, through its library
// `validate`, as its CLI cannot load initializers): embedded, and through
// agentmemd when AGENTMEM_TEST_SOCKET is set.
import { validate } from "@langchain/langgraph-checkpoint-validation";

import { AgentmemSaver } from "../index.js";

validate({
  checkpointerName: "AgentmemSaver (embedded)",
  createCheckpointer: () => new AgentmemSaver(),
  destroyCheckpointer: (saver) => saver.close(),
});

if (process.env.AGENTMEM_TEST_SOCKET) {
  validate({
    checkpointerName: "AgentmemSaver (agentmemd)",
    createCheckpointer: () => new AgentmemSaver({ socketPath: process.env.AGENTMEM_TEST_SOCKET }),
    destroyCheckpointer: (saver) => saver.close(),
  });
}
