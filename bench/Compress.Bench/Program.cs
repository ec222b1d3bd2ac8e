// Benchmarks print tables; they are never part of the tests.
//   large-model [--gigabytes G] [--dir D]   a synthetic model over 2 GB: generate, read + write, load in ONNX Runtime
//   calibration [repeats]                    static int8 on the CNN (512 samples) vs the 512 forward passes alone
//   build-time [repeats]                     cold and no-op builds of the sample, with and without its CompressModel item
//   wrapper [rounds]                         generated wrapper vs hand-written ONNX Runtime code, batch 1 and 64
//   pruning [mlp|cnn…]                       one-shot accuracy against sparsity for every pruning method of the catalog
//   sparsegpt-layer [size] [rows] [repeats]  SparseGPT on one 4096×4096 linear layer with 512 calibration rows
//   run <model> [--data f.npz] [--only …]    time and peak memory of ordinary compress runs (each in its own process)
//   latency <data.npz> <model.onnx>… [--nodes] [--qoperator]  batch-1/batch-32 latency, one thread, interleaved medians; per-kernel table; QOperator form too
//   allocation [mlp|cnn|model.onnx:flat|image|row:sparsity …]  DP against QUBO annealing on real error databases, and their accuracy
//   packing [file.cpack …]                   load overhead of a packed 10 MB model; rANS against Huffman on packed files
//   recovery [mlp] [cnn] [int4] [pack] [statedict]  issue 19's distillation recoveries against one shot: accuracy, time, peak memory, same bytes
using Compress.Bench;

var verb = args.FirstOrDefault();
switch (verb)
{
    case "large-model":
        return LargeModelBenchmark.Run(args[1..]);
    case "calibration":
        return CalibrationBenchmark.Run(args[1..]);
    case "build-time":
        return BuildTimeBenchmark.Run(args[1..]);
    case "wrapper":
        return WrapperBenchmark.Run(args[1..]);
    case "pruning":
        return PruningBenchmark.Run(args[1..]);
    case "sparsegpt-layer":
        return SparseGptLayerBenchmark.Run(args[1..]);
    case "run":
        return RunBenchmark.Run(args[1..]);
    case "latency":
        return LatencyBenchmark.Run(args[1..]);
    case "packing":
        return PackingBenchmark.Run(args[1..]);
    case "allocation":
        return AllocationBenchmark.Run(args[1..]);
    case "recovery":
        return RecoveryBenchmark.Run(args[1..]);
    case RecoveryBenchmark.ChildVerb:
        return RecoveryBenchmark.RunChild(args[1..]);
    case PackingBenchmark.ChildVerb:
        return PackingBenchmark.RunChild(args[1..]);
    case RunBenchmark.ChildVerb:
        return RunBenchmark.RunChild(args[1..]);
    case LargeModelBenchmark.ChildVerb:
        return LargeModelBenchmark.RunChild(args[1..]);
    default:
        Console.Error.WriteLine("usage: Compress.Bench large-model [--gigabytes 2.2] [--dir /tmp/compress-bench] | calibration [repeats] | build-time [repeats] | wrapper [rounds] | pruning [mlp] [cnn] | sparsegpt-layer [4096] [512] [3] | run <model.onnx> [--data file.npz] [--samples N] [--only step,…] | latency <data.npz> <model.onnx>… | packing [file.cpack …] | allocation [mlp] [cnn] [model.onnx:flat|image|row:sparsity] | recovery [mlp] [cnn] [int4] [pack] [statedict]");
        return 2;
}
