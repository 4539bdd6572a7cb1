// The backend's row-wise source, built for Thrust's host system (see src/cuda/policy.cuh).
#include "../../src/cuda/rows.cu"
