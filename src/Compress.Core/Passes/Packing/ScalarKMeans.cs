using TorchSharp;
using static TorchSharp.torch;

namespace Compress.Core.Passes.Packing;

/// <summary>
/// One-dimensional k-means (Lloyd) on a layer's kept weights, from centroids spaced linearly between the smallest and
/// the largest weight (algorithms.md §17: linear initialisation keeps the rare large weights, which matter most, their
/// own centroids; density-based initialisation would spend them on the crowd near zero). In one dimension each
/// cluster is an interval, so assignment is a binary search of the midpoints between sorted centroids. Deterministic:
/// no random start, ties go to the lower centroid, empty clusters dropped at the end.
/// </summary>
public static class ScalarKMeans
{
    public const int MaxIterations = 100;

    /// <summary>Centroids [k'] (float64, ascending, k' ≤ <paramref name="k"/>, none empty) and each value's cluster [n] (int64).</summary>
    /// <param name="values">The kept weights, 1-D, at least one.</param>
    public static (Tensor Centroids, Tensor Assignment) Fit(Tensor values, int k)
    {
        using var scope = NewDisposeScope();
        var x = values.to_type(ScalarType.Float64).flatten();
        var (lo, hi) = (x.min().item<double>(), x.max().item<double>());
        var centroids = lo == hi ? tensor(new[] { lo }, ScalarType.Float64) : linspace(lo, hi, Math.Min(k, x.shape[0]), ScalarType.Float64);
        var assignment = Assign(x, centroids);
        for (var iteration = 0; iteration < MaxIterations; iteration++)
        {
            var count = centroids.shape[0];
            var sums = zeros(count, ScalarType.Float64).index_add_(0, assignment, x, 1);
            var counts = bincount(assignment, minlength: count).to_type(ScalarType.Float64);
            var updated = where(counts.gt(0), sums / counts.clamp_min(1), centroids).sort().Values;
            var next = Assign(x, updated);
            var settled = next.eq(assignment).all().item<bool>();
            (centroids, assignment) = (updated, next);
            if (settled)
            {
                break;
            }
        }

        // Drop clusters no weight chose, renumbering the others.
        var used = bincount(assignment, minlength: centroids.shape[0]).gt(0);
        var renumber = used.to_type(ScalarType.Int64).cumsum(0) - 1;
        return (centroids[used].MoveToOuterDisposeScope(), renumber[assignment].MoveToOuterDisposeScope());
    }

    /// <summary>The nearest centroid of each value (centroids ascending): a search among the midpoints.</summary>
    public static Tensor Assign(Tensor values, Tensor centroids) =>
        centroids.shape[0] == 1
            ? zeros(values.shape[0], ScalarType.Int64)
            : searchsorted((centroids[1..] + centroids[..^1]) / 2, values);
}
