using System.Collections.Generic;
using System.Linq;
using Compress.Spec.Methods;

namespace Compress.Spec
{
    /// <summary>A validated compression spec. Every value has been checked; paths are absolute.</summary>
    public sealed class CompressionSpec
    {
        public string File { get; set; } = "";

        public DataSource? Calibration { get; set; }

        /// <summary>Calibration inputs synthesised from the model (<c>data.calibration.synthesize</c>) instead of a file; then <see cref="Calibration"/> is null.</summary>
        public SyntheticData? SyntheticCalibration { get; set; }

        public DataSource? Evaluation { get; set; }

        /// <summary>More (unlabeled) inputs for the <c>finetune</c> step to distill on; null: it uses the calibration data.</summary>
        public DataSource? Training { get; set; }

        public List<SpecStep> Steps { get; } = new List<SpecStep>();

        /// <summary>The steps an <c>allocate</c> step plans for: those after it, up to the next <c>allocate</c> step.</summary>
        public List<SpecStep> Covered(AllocateStep allocate) =>
            Steps.SkipWhile(s => !ReferenceEquals(s, allocate)).Skip(1).TakeWhile(s => !(s is AllocateStep)).ToList();

        public SpecConstraints Constraints { get; set; } = new SpecConstraints();

        public SpecTarget Target { get; set; } = new SpecTarget();

        /// <summary>The app's module type for a TorchSharp state dict (<c>module</c>), or null.</summary>
        public ModuleSpec? Module { get; set; }
    }

    /// <summary>A .npy/.npz file: arrays named after model inputs, optionally a labels array.</summary>
    public sealed class DataSource
    {
        public string Path { get; set; } = "";

        /// <summary>How many samples to use (a seeded random subset), or null for all.</summary>
        public int? Samples { get; set; }

        public int Seed { get; set; }

        /// <summary>Name of the labels array in the file (evaluation only).</summary>
        public string? Labels { get; set; }

        /// <summary>
        /// Evaluation only: <c>accuracy</c> (needs labels), <c>agreement</c> (top-1 agreement with the original model),
        /// <c>cosine</c> or <c>sqnr</c> — how the judged output is measured; null to go by the output's kind.
        /// </summary>
        public string? Metric { get; set; }

        /// <summary>Evaluation only: the model output that constraints, the default floor and <c>"sparsity": "auto"</c> judge; null for the first.</summary>
        public string? Output { get; set; }

        public int Line { get; set; }

        public int Column { get; set; }
    }

    /// <summary>One step of the pipeline, applied in file order. The position is the step's object in the spec.</summary>
    public abstract class SpecStep
    {
        public int Line { get; set; }

        public int Column { get; set; }

        /// <summary>Node-name globs (<c>*</c>, <c>?</c>) the step is limited to; empty means all.</summary>
        public List<string> Include { get; } = new List<string>();

        /// <summary>Node-name or op-type globs the step leaves alone.</summary>
        public List<string> Exclude { get; } = new List<string>();

        /// <summary>Operator types the step applies to.</summary>
        public List<string> OpTypes { get; } = new List<string>();

        /// <summary>
        /// Whether <see cref="OpTypes"/> are the method's defaults (the spec names none): a pass may then refine them
        /// from the graph, as static quantization keeps a transformer's LayerNorm, Softmax and GELU float.
        /// </summary>
        public bool DefaultOpTypes { get; set; }

        /// <summary>The step's key in the spec: <c>prune</c>, <c>quantize</c>.</summary>
        public abstract string Kind { get; }

        /// <summary>The method as the spec names it (an alias stays an alias); <see cref="MethodCatalog.Of(SpecStep)"/> finds its descriptor.</summary>
        public abstract string Method { get; set; }

        /// <summary>The spec left <c>method</c> out: the kind's default applies, and a pass may choose better with data at hand.</summary>
        public bool MethodDefaulted { get; set; }

        /// <summary>For kinds with schemes: the one the step's settings choose (<see cref="QuantizeStep.Scheme"/>); else null.</summary>
        public virtual string? Scheme => null;

        /// <summary>The method's options (<see cref="MethodDescriptor.Options"/>), as given or defaulted; booleans are 0 or 1.</summary>
        public Dictionary<string, double> Options { get; } = new Dictionary<string, double>();

        /// <summary>An option of the step's method, or <paramref name="fallback"/> when the method has no such option.</summary>
        public double Option(string key, double fallback) => Options.TryGetValue(key, out var value) ? value : fallback;
    }

    public sealed class PruneStep : SpecStep
    {
        public override string Kind => "prune";

        public override string Method { get; set; } = MagnitudeMethod.Name;

        public double Sparsity { get; set; }

        /// <summary><c>global</c> (one threshold over all prunable tensors) or <c>layer</c>.</summary>
        public string Scope { get; set; } = "global";

        /// <summary>0 for unstructured; otherwise keep N of every M consecutive weights along the input axis.</summary>
        public int N { get; set; }

        public int M { get; set; }

        /// <summary><c>"pattern": "channel"</c>: whole channels removed with their dependency groups (algorithms.md §14).</summary>
        public bool Channel { get; set; }

        public double MaxLayerSparsity { get; set; } = 0.98;

        /// <summary><c>"sparsity": "auto"</c>: the highest sparsity meeting the spec's constraints (the pipeline searches it).</summary>
        public bool Auto { get; set; }

        /// <summary>
        /// <c>"schedule": {"steps": N}</c>: gradual pruning (Zhu &amp; Gupta) — N prunes at cubically rising sparsity, each
        /// followed by the <c>finetune</c> step after this one with its share of the steps; 0 prunes once.
        /// </summary>
        public int ScheduleSteps { get; set; }

        /// <summary>The spec left <c>sparsity</c> to the <c>allocate</c> step before this one.</summary>
        public bool AllocatedSparsity { get; set; }

        /// <summary>OBS: columns per block (B). WoodFisher: weights per Fisher block (c).</summary>
        public int BlockSize { get; set; } = 128;

        /// <summary>OBS: dampening as a fraction of the mean Hessian diagonal. WoodFisher: λ of F = λI + (1/N) Σ g gᵀ.</summary>
        public double Damping { get; set; } = 0.01;

        /// <summary>WoodFisher: pruning sub-steps, each with a freshly estimated inverse Fisher.</summary>
        public int Steps { get; set; } = 4;

        /// <summary>One stage of a gradual prune: this step at <paramref name="sparsity"/>, pruning once.</summary>
        public PruneStep Stage(double sparsity)
        {
            var stage = (PruneStep)MemberwiseClone();
            stage.Sparsity = sparsity;
            stage.ScheduleSteps = 0;
            return stage;
        }

        /// <summary>Whether the method needs calibration data (activations or gradients).</summary>
        public bool DataAware => MethodCatalog.Of(this).Data != MethodData.None;
    }

    /// <summary>
    /// <c>allocate</c>: per-layer sparsity and bits for the prune and quantize steps after it, under a size budget or
    /// the spec's constraints.
    /// </summary>
    public sealed class AllocateStep : SpecStep
    {
        public override string Kind => "allocate";

        public override string Method { get; set; } = DpMethod.Name;

        /// <summary>The artifact's target size as a fraction of the source model's bytes; null when not given.</summary>
        public double? Size { get; set; }

        /// <summary>The artifact's target size in bytes; null when not given.</summary>
        public long? Bytes { get; set; }

        /// <summary>
        /// The artifact's multiply-adds per sample as a fraction of the source's (a channel prune step's channel counts, or a
        /// factorize step's ranks, are allocated to meet it); null when not given.
        /// </summary>
        public double? Macs { get; set; }

        /// <summary>
        /// The artifact's batch-1 latency as a fraction of the source's, as the allocation measures it (one thread): a channel
        /// prune step's channel counts are allocated on measured timings; null when not given.
        /// </summary>
        public double? Latency { get; set; }

        /// <summary>Whether the step names a budget (<c>size</c>, <c>bytes</c>, <c>macs</c> or <c>latency</c>); without one it searches.</summary>
        public bool HasBudget => Size != null || Bytes != null || Macs != null || Latency != null;

        /// <summary>Whether the allocation measures each layer's loss sensitivity (<c>sensitivity: hessian</c>).</summary>
        public bool MeasuresSensitivity => Sensitivity == "hessian";

        /// <summary>Compress-and-evaluate rounds correcting the proxy (null: the engine's default).</summary>
        public int? Rounds { get; set; }

        /// <summary>The bit-widths a layer may take; empty: those the quantize step's scheme offers.</summary>
        public List<int> Bits { get; } = new List<int>();

        /// <summary><c>hessian</c> (HAWQ traces weigh the layers' errors) or <c>none</c>.</summary>
        public string Sensitivity { get; set; } = "hessian";

        /// <summary>The round's exponent on the layer sensitivity (set by the engine's rounds; 0 weighs layers alike).</summary>
        public double Gamma { get; set; } = 1;

        /// <summary>The round's budget as a fraction of the source model's bytes when the spec gives none (the engine's search sets it).</summary>
        public double? SearchedSize { get; set; }

        /// <summary>The artifact's bytes the last allocation estimated (set by the engine).</summary>
        public long EstimatedBytes { get; set; }

        /// <summary>Bytes the rounds so far measured beyond their estimates (the engine's rounds set it; the next allocation holds them back).</summary>
        public long MeasuredOverhead { get; set; }
    }

    public sealed class QuantizeStep : SpecStep
    {
        public override string Kind => "quantize";

        public override string Method { get; set; } = RtnMethod.Name;

        /// <summary><c>int8</c>, <c>int4</c> or <c>fp16</c>.</summary>
        public string Weights { get; set; } = "int8";

        /// <summary><c>int8</c>, <c>uint8</c> (static), <c>dynamic</c>, or <c>none</c> (weight-only).</summary>
        public string Activations { get; set; } = "none";

        /// <summary><c>channel</c> or <c>tensor</c>.</summary>
        public string Granularity { get; set; } = "channel";

        /// <summary>Activation range estimator: <c>minmax</c>, <c>percentile</c>, <c>entropy</c>, <c>mse</c>.</summary>
        public string Calibration { get; set; } = "minmax";

        public double Percentile { get; set; } = 99.999;

        /// <summary>
        /// Activations whose own quantization SQNR on the calibration data falls below this (dB) stay float32;
        /// null quantizes every selected activation.
        /// </summary>
        public double? MinActivationSqnrDb { get; set; }

        /// <summary>Empirical bias correction of quantized Conv/Gemm layers against the float model (static only).</summary>
        public bool BiasCorrection { get; set; }

        /// <summary>
        /// SmoothQuant's migration strength α (static only): per-channel scales moved from the outputs of LayerNorms
        /// into the weights of the MatMul/Gemm reading them; null leaves the model as it is.
        /// </summary>
        public double? Smoothing { get; set; }

        public int BlockSize { get; set; } = 32;

        public bool Symmetric { get; set; } = true;

        /// <summary>The spec left <c>symmetric</c> out (the int4 GPTQ default then stores zero points).</summary>
        public bool SymmetricDefaulted { get; set; } = true;

        /// <summary>
        /// Weight-only: <c>kernel</c> (MatMulNBits / GatherBlockQuantized, packed in memory), <c>float</c> (packed in the
        /// file, unpacked to float32 by ONNX Runtime at load), or <c>auto</c>: float where a layer sees more than one row
        /// per sample (a sequence), kernel elsewhere.
        /// </summary>
        public string Form { get; set; } = "auto";

        /// <summary>GPTQ: process columns in descending order of the Hessian diagonal.</summary>
        public bool ActOrder { get; set; }

        /// <summary>GPTQ: dampening as a fraction of the mean Hessian diagonal.</summary>
        public double Damping { get; set; } = 0.01;

        /// <summary>What the step produces (<see cref="QuantizeSchemes"/>), derived from weights and activations.</summary>
        public override string Scheme =>
            Weights == "fp16" ? QuantizeSchemes.Fp16
            : Activations == "dynamic" ? QuantizeSchemes.Dynamic
            : Activations == "none" ? QuantizeSchemes.WeightOnly
            : QuantizeSchemes.Static;
    }

    /// <summary><c>factorize</c>: W ≈ B·A of rank r (algorithms.md §16).</summary>
    public sealed class FactorizeStep : SpecStep
    {
        public override string Kind => "factorize";

        public override string Method { get; set; } = SvdMethod.Name;

        /// <summary>
        /// The smallest rank keeping this fraction of Σσ² of the whitened weight W·L (whose first direction, the inputs'
        /// mean, holds most of it: hence a default close to 1).
        /// </summary>
        public double Energy { get; set; } = 0.999;

        /// <summary>A budget: the two factors hold at most this fraction of the layer's weights; null for none.</summary>
        public double? ParameterRatio { get; set; }
    }

    public sealed class SpecConstraints
    {
        /// <summary>Largest allowed drop of accuracy, as a fraction (0.005 = half a percentage point).</summary>
        public double? MaxAccuracyDrop { get; set; }

        /// <summary>Smallest allowed top-1 agreement with the original model, as a fraction.</summary>
        public double? MinAgreement { get; set; }

        /// <summary>Smallest allowed mean per-sample cosine similarity of the judged output with the original's.</summary>
        public double? MinCosine { get; set; }

        /// <summary>Smallest allowed output signal-to-quantization-noise ratio, in dB.</summary>
        public double? MinSqnrDb { get; set; }

        /// <summary>
        /// Largest allowed batch-1 latency of the compressed model over the source's (one thread, median): the latency
        /// guard keeps quantized regions float where that is faster, and refuses to ship a model past the ratio.
        /// </summary>
        public double? MaxLatencyRatio { get; set; }

        /// <summary>Where each constraint the spec sets is written (its key's line and column), for errors found later.</summary>
        public Dictionary<string, (int Line, int Column)> Positions { get; } = new Dictionary<string, (int Line, int Column)>();

        /// <summary>The line and column of constraint <paramref name="key"/>, or (1, 1) when it was not read from a file.</summary>
        public (int Line, int Column) At(string key) => Positions.TryGetValue(key, out var at) ? at : (1, 1);
    }

    public sealed class SpecTarget
    {
        public string Runtime { get; set; } = "onnxruntime";

        public string ExecutionProvider { get; set; } = "cpu";
    }
}
