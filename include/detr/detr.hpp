#pragma once
// DETR++ umbrella header: everything a model author needs.
#include "detr/core/error.hpp"
#include "detr/core/device.hpp"
#include "detr/core/shape.hpp"
#include "detr/core/tensor.hpp"
#include "detr/core/rng.hpp"
#include "detr/autograd/var.hpp"
#include "detr/autograd/gradcheck.hpp"
#include "detr/ops/elementwise.hpp"
#include "detr/ops/linalg.hpp"
