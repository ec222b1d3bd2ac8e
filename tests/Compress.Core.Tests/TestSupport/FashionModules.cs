using Compress.Core.Data;
using Compress.Core.Torch;
using static TorchSharp.torch;

namespace Compress.Core.Tests.TestSupport;

/// <summary>TorchSharp modules on Fashion-MNIST in the tests: the data as tensors, a brief training, top-1 accuracy.</summary>
public static class FashionModules
{
    /// <summary>The <c>input</c> and <c>labels</c> arrays of a data file.</summary>
    public static (Tensor X, Tensor Y) Load(string npz)
    {
        var arrays = ArrayFile.Read(npz);
        return (arrays["input"].ToTorch(), tensor(arrays["labels"].ToInt64()));
    }

    /// <summary>Adam (2e-3), batches of 64 in order, cross-entropy against the labels; seed before building the module for the same weights.</summary>
    public static void Train(nn.Module<Tensor, Tensor> module, Tensor x, Tensor y, int epochs = 8)
    {
        using var optimizer = optim.Adam(module.parameters(), 2e-3);
        module.train();
        for (var epoch = 0; epoch < epochs; epoch++)
        {
            for (long start = 0; start < x.shape[0]; start += 64)
            {
                using var scope = NewDisposeScope();
                var count = Math.Min(64, x.shape[0] - start);
                var loss = nn.functional.cross_entropy(module.call(x.narrow(0, start, count)), y.narrow(0, start, count));
                optimizer.zero_grad();
                loss.backward();
                optimizer.step();
            }
        }
    }

    /// <summary>Top-1 accuracy of the module (in eval mode) on <paramref name="x"/> against <paramref name="y"/>.</summary>
    public static double Accuracy(nn.Module<Tensor, Tensor> module, Tensor x, Tensor y)
    {
        module.eval();
        using var _ = no_grad();
        using var predicted = module.call(x).argmax(1);
        return predicted.eq(y).to_type(ScalarType.Float64).mean().item<double>();
    }
}
