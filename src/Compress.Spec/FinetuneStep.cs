using Compress.Spec.Methods;

namespace Compress.Spec
{
    /// <summary>
    /// <c>{ "finetune": { … } }</c>: recovery by knowledge distillation from the original model on the calibration (or
    /// training) inputs, after the prune, quantize and factorize steps before it — masks held fixed, quantized layers
    /// trained on their grids through a straight-through estimator (algorithms.md §17).
    /// </summary>
    public sealed class FinetuneStep : SpecStep
    {
        /// <summary>KL divergence on temperature-softened class scores (·T²).</summary>
        public const string KlLoss = "kl";

        /// <summary>Mean squared error on the output, divided by the original output's mean square.</summary>
        public const string MseLoss = "mse";

        /// <summary>1 − cosine similarity per sample.</summary>
        public const string CosineLoss = "cosine";

        /// <summary>KL for class scores, MSE for features (the output's kind decides).</summary>
        public const string AutoLoss = "auto";

        public override string Kind => "finetune";

        public override string Method { get; set; } = DistillMethod.Name;

        /// <summary>Optimiser steps (each one batch); a gradual prune's stages share them.</summary>
        public int Steps { get; set; } = 1000;

        public int BatchSize { get; set; } = 128;

        /// <summary>The optimiser's base learning rate (cosine decay to zero over the steps).</summary>
        public double LearningRate { get; set; } = 1e-3;

        /// <summary><c>adam</c> or <c>sgd</c> (momentum 0.9).</summary>
        public string Optimizer { get; set; } = "adam";

        /// <summary><see cref="AutoLoss"/>, <see cref="KlLoss"/>, <see cref="MseLoss"/> or <see cref="CosineLoss"/>.</summary>
        public string Loss { get; set; } = AutoLoss;

        /// <summary>The softening temperature T of the KL loss.</summary>
        public double Temperature { get; set; } = 2;

        /// <summary>The share of the training samples held out to judge the steps (early stopping, best state kept).</summary>
        public double Holdout { get; set; } = 0.1;

        /// <summary>Holdout checks without improvement before training stops.</summary>
        public int Patience { get; set; } = 5;

        /// <summary>Seeds the sample order and the holdout split.</summary>
        public int Seed { get; set; }

        /// <summary>For one stage of a gradual prune: the share of <see cref="Steps"/> this run takes (set by the engine).</summary>
        public double Share { get; set; } = 1;

        /// <summary>This step as one stage of a gradual prune, taking <paramref name="share"/> of its steps.</summary>
        public FinetuneStep Stage(double share)
        {
            var stage = (FinetuneStep)MemberwiseClone();
            stage.Share = share;
            return stage;
        }
    }
}
