using static TorchSharp.torch;

namespace Compress.Core.Execution;

/// <summary>
/// A model the gradient methods (SNIP, WoodFisher) can differentiate: gradients of the loss on calibration samples
/// with respect to chosen weights, and those weights replaced between steps. Implemented for ONNX graphs
/// (<see cref="GradientSource"/>, through the TorchSharp executor) and for TorchScript modules.
/// </summary>
public interface IGradientModel
{
    /// <summary>Calibration samples available.</summary>
    int Count { get; }

    /// <summary>What the loss is measured against, for the report.</summary>
    string Source { get; }

    /// <summary>∂L/∂w for each chosen weight (in the order given when the model was made), L the mean loss over samples [start, start + count).</summary>
    Tensor[] Gradients(int start, int count);

    /// <summary>Replaces a chosen weight's value.</summary>
    void SetWeight(string name, Tensor value);
}
