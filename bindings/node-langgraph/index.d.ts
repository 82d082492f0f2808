import type { RunnableConfig } from "@langchain/core/runnables";
import type {
  BaseCheckpointSaver,
  ChannelVersions,
  Checkpoint,
  CheckpointListOptions,
  CheckpointMetadata,
  CheckpointTuple,
  PendingWrite,
  SerializerProtocol,
} from "@langchain/langgraph-checkpoint";
import type { Store } from "agentmem";

export interface AgentmemSaverOptions {
  /** An agentmem store to use (not closed by `close()`). */
  store?: Store;
  /** agentmemd's Unix socket. */
  socketPath?: string;
  /** An embedded store in this directory. */
  dir?: string;
  /** Tenant of the threads' agents. Default: "default". */
  tenant?: string;
  serde?: SerializerProtocol;
  /** Channels stored as conversations when their value is an array. Default: ["messages"]. */
  conversationChannels?: string[];
  /** Serialized values up to this many bytes stay in the log record. Default: 256. */
  inlineLimit?: number;
}

export declare class AgentmemSaver extends BaseCheckpointSaver<number> {
  constructor(options?: AgentmemSaverOptions);
  readonly store: Store;
  close(): void;
  pauseThread(threadId: string): void;
  getTuple(config: RunnableConfig): Promise<CheckpointTuple | undefined>;
  list(config: RunnableConfig, options?: CheckpointListOptions): AsyncGenerator<CheckpointTuple>;
  put(config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, newVersions: ChannelVersions): Promise<RunnableConfig>;
  putWrites(config: RunnableConfig, writes: PendingWrite[], taskId: string, taskPath?: string): Promise<void>;
  deleteThread(threadId: string): Promise<void>;
}
