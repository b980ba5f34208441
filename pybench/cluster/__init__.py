"""Running the matrix on a Slurm cluster through submitit: one job per cell (all its frameworks and
rounds on one node), records gathered back into the usual results folder.

- `options`: the command-line options of `--executor slurm` and their validation.
- `node`: what a job runs on its node (pybench's own runner) and the plan it leaves there.
- `slurm`: job states as Slurm reports them (scontrol, or sacct where accounting exists).
- `submission`: the submission folder, its manifest, and collecting finished jobs (idempotent).
- `commands`: `run`/`compare --executor slurm`, `collect` and `env --executor slurm`.
"""
