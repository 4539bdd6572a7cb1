// The backend's element-wise source, built for Thrust's host system (see src/cuda/policy.cuh).
#include "../../src/cuda/elementwise.cu"
