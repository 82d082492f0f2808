import asyncio
from agents import Agent, Runner
from agents.testing import ScriptedModel, assistant_message  # any model works here
from agentmem.openai_agents import AgentmemSession

async def main():
    agent = Agent(name="bot", model=ScriptedModel([[assistant_message("hi!")], [assistant_message("again")]]))
    session = AgentmemSession("user-42")
    await Runner.run(agent, "hello", session=session)
    await Runner.run(agent, "and now?", session=session)  # the model sees the first exchange
    print(len(await session.get_items()), "items in the session")
asyncio.run(main())
