"""The streaming engine: planning (plan), buffers, executors, tasks and the pipeline."""
