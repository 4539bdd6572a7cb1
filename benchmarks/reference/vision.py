"""PyTorch twin of bench_vision.cpp: the same ops, shapes and case names. Prints one line per
case, `<case> <median ms>`; runs at its best (2 threads, warm-up, torch.no_grad for forwards).
FrozenBatchNorm2d is F.batch_norm in eval mode with fixed weight and bias."""
import statistics
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def time_op(shape, params, backward, f, reps):
    x = torch.randn(*shape, requires_grad=backward)
    with torch.no_grad():
        seed = torch.randn_like(f(x))
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        if backward:
            f(x).backward(seed)
            x.grad = None
            for p in params:
                p.grad = None
        else:
            with torch.no_grad():
                f(x)
        if i >= 3:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
convs = [("conv_stem_7x7s2", (2, 3, 512, 512), (64, 3, 7, 7), 2, 3),
         ("conv_3x3_256", (2, 256, 32, 32), (256, 256, 3, 3), 1, 1),
         ("conv_3x3s2_128", (2, 128, 128, 128), (128, 128, 3, 3), 2, 1),
         ("conv_1x1_1024_256", (2, 1024, 32, 32), (256, 1024, 1, 1), 1, 0),
         ("conv_input_proj_2048_256", (2, 2048, 16, 16), (256, 2048, 1, 1), 1, 0)]
for name, xs, ws, s, p in convs:
    w = (torch.randn(*ws) * 0.05).requires_grad_()
    for bwd in (False, True):
        ms = time_op(xs, [w], bwd, lambda x: F.conv2d(x, w, None, s, p), reps)
        print(f"{name}_{'forward_backward' if bwd else 'forward'} {ms:.3f}")
for bwd in (False, True):
    ms = time_op((2, 64, 256, 256), [], bwd, lambda x: F.max_pool2d(x, 3, 2, 1), reps)
    print(f"maxpool_3x3s2_{'forward_backward' if bwd else 'forward'} {ms:.3f}")
for training, tag in ((True, "train"), (False, "frozen")):
    w, b = torch.ones(64, requires_grad=training), torch.zeros(64, requires_grad=training)
    rm, rv = torch.zeros(64), torch.ones(64)
    for bwd in (False, True):
        ms = time_op((2, 64, 256, 256), [w, b], bwd, lambda x: F.batch_norm(x, rm, rv, w, b, training), reps)
        print(f"batch_norm_{tag}_{'forward_backward' if bwd else 'forward'} {ms:.3f}")
w, b = torch.ones(256, requires_grad=True), torch.zeros(256, requires_grad=True)
for bwd in (False, True):
    ms = time_op((2, 256, 64, 64), [w, b], bwd, lambda x: F.group_norm(x, 32, w, b), reps)
    print(f"group_norm_32_{'forward_backward' if bwd else 'forward'} {ms:.3f}")
m = torch.zeros(2, 512, 512)
ms = time_op((1,), [], False, lambda _: F.interpolate(m[None], size=(16, 16))[0], reps)
print(f"interpolate_mask_forward {ms:.3f}")
