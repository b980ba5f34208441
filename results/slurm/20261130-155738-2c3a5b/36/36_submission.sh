#!/bin/bash

# Parameters
#SBATCH --error=/work/wt/slurm/results/slurm/20261130-155738-2c3a5b/%j/%j_0_log.err
#SBATCH --exclusive
#SBATCH --job-name=pybench
#SBATCH --nodes=1
#SBATCH --open-mode=append
#SBATCH --output=/work/wt/slurm/results/slurm/20261130-155738-2c3a5b/%j/%j_0_log.out
#SBATCH --signal=USR2@90
#SBATCH --time=5
#SBATCH --wckey=submitit

# command
export SUBMITIT_EXECUTOR=slurm
/work/main/.venv/bin/python -u -m submitit.core._submit /work/wt/slurm/results/slurm/20261130-155738-2c3a5b/%j
