namespace Compress.Core.Evaluation;

/// <summary>Top-1 helpers over row-major logits.</summary>
public static class Classification
{
    public static int ArgMax(ReadOnlySpan<float> row)
    {
        var best = 0;
        for (var c = 1; c < row.Length; c++)
        {
            best = row[c] > row[best] ? c : best;
        }

        return best;
    }

    /// <summary>Fraction of rows of <paramref name="logits"/> ([n, classes]) whose argmax equals the label.</summary>
    public static double Accuracy(ReadOnlySpan<float> logits, IReadOnlyList<byte> labels, int classes)
    {
        var correct = 0;
        for (var i = 0; i < labels.Count; i++)
        {
            correct += ArgMax(logits.Slice(i * classes, classes)) == labels[i] ? 1 : 0;
        }

        return correct / (double)labels.Count;
    }
}
