using System.Collections.Generic;

namespace Compress.Spec.Methods
{
    /// <summary>
    /// <c>finetune</c>: recovery by distillation after the steps before it — optimiser, steps, learning rate, batch size,
    /// loss, temperature, holdout share, patience and seed, each with a default.
    /// </summary>
    internal sealed class FinetuneKind : StepKind
    {
        public FinetuneKind()
            : base("finetune", "fine-tuning", DistillMethod.Name,
                new[] { "method", "steps", "batchSize", "learningRate", "optimizer", "loss", "temperature", "holdout", "patience", "seed" },
                new Dictionary<string, string[]>
                {
                    ["optimizer"] = new[] { "adam", "sgd" },
                    ["loss"] = new[] { FinetuneStep.AutoLoss, FinetuneStep.KlLoss, FinetuneStep.MseLoss, FinetuneStep.CosineLoss },
                })
        {
        }

        internal override SpecStep Read(SpecValues values, JsonNode node, MethodDescriptor method, string written)
        {
            var step = new FinetuneStep
            {
                Method = written,
                Steps = (int)(values.OptionalNumber(node, "steps", 1, 1_000_000, integer: true) ?? 1000),
                BatchSize = (int)(values.OptionalNumber(node, "batchSize", 1, 65_536, integer: true) ?? 128),
                LearningRate = values.OptionalNumber(node, "learningRate", 1e-8, 10) ?? 1e-3,
                Optimizer = values.Choice(node, "optimizer", "finetune.optimizer") ?? "adam",
                Loss = values.Choice(node, "loss", "finetune.loss") ?? FinetuneStep.AutoLoss,
                Temperature = values.OptionalNumber(node, "temperature", 0.1, 100) ?? 2,
                Holdout = values.OptionalNumber(node, "holdout", 0, 0.5) ?? 0.1,
                Patience = (int)(values.OptionalNumber(node, "patience", 1, 1000, integer: true) ?? 5),
                Seed = (int)(values.OptionalNumber(node, "seed", 0, int.MaxValue, integer: true) ?? 0),
            };
            if (node["temperature"] is JsonNode temperature && step.Loss != FinetuneStep.KlLoss && step.Loss != FinetuneStep.AutoLoss)
            {
                throw values.Error(SpecCodes.Inconsistent, temperature, $"'temperature' softens the class scores of the 'kl' loss, not '{step.Loss}'");
            }

            RefuseOptionsNotTaken(values, node, method, written);
            ReadOptions(values, node, method, step);
            return step;
        }

        internal override string Describe(SpecStep step) => "fine-tuning by distillation";
    }
}
