"""Phase 3: VLA finetuning on LIBERO. So far: LIBERO offline (libero_env), the scripted LIBERO-Object expert
(expert, expert_eval) and its demonstrations as LeRobotDatasets (collect, staging, dataset). See README.md."""
