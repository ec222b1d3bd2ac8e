namespace Compress.Spec
{
    /// <summary>
    /// <c>data.calibration</c> with <c>"synthesize"</c>: calibration inputs made from the model itself, for a user with no
    /// data at all. <c>batchnorm</c> optimises random inputs until the batch statistics at every BatchNormalization match
    /// its running mean and variance (ZeroQ; docs/algorithms.md, "Data-free compression"). Such inputs calibrate the
    /// steps that need activations; they never judge the result, which is then not checked on real data (CMP0080).
    /// </summary>
    public sealed class SyntheticData
    {
        /// <summary>The one way of synthesising inputs: from the model's BatchNormalization statistics.</summary>
        public const string BatchNorm = "batchnorm";

        /// <summary>The choices of <c>synthesize</c>.</summary>
        public static readonly string[] Methods = { BatchNorm };

        /// <summary>How the inputs are made (<see cref="BatchNorm"/>).</summary>
        public string Method { get; set; } = BatchNorm;

        /// <summary>How many inputs to synthesise.</summary>
        public int Samples { get; set; } = 64;

        /// <summary>Seeds the random starting inputs: the same seed gives the same inputs.</summary>
        public int Seed { get; set; }

        /// <summary>Adam steps per batch of inputs.</summary>
        public int Iterations { get; set; } = 100;

        /// <summary>Line of the <c>data.calibration</c> object in the spec.</summary>
        public int Line { get; set; }

        /// <summary>Column of the <c>data.calibration</c> object in the spec.</summary>
        public int Column { get; set; }
    }
}
