"""The egress proxy: how executions reach allowed names, and nothing else."""
