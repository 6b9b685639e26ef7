"""Phase 5: acting with the world models of phases 1, 2 and 4 - planning in imagination, scored in the real game.

Public surface:

    protocol    History, Imagined, WorldModel (the one interface planners use), check_actions
    adapters    Phase1Model (DIAMOND-lite / regressor), DFModel (phase 2), EmulatorModel + snapshot (the oracle)
    planner     Planner (enumerate / shooting / cem, receding horizon, warm start), sequence_value, Plan
    agents      RandomAgent, PlanningAgent, play_game, GameResult
    actor_critic  ActorCritic, ImaginationLearner (DIAMOND's training in imagination), lambda_returns, ActorCriticAgent
    loading     load_agent
    config      PlanConfig, PlannerConfig, ModelConfig, GameConfig, ActorCriticConfig, AgentTrainConfig,
                IntegrationEvaluateConfig

Entry points: plan (one agent plays real games), train_agent (an actor-critic in imagination), evaluate (the table
over agents). See README.md.
"""
