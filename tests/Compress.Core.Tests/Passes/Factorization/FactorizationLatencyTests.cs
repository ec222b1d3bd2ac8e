using Compress.Core.Passes.Factorization;

namespace Compress.Core.Tests.Passes.Factorization;

/// <summary>
/// The factorize step's measured check on an injected timer (no timing in a test): each layer costs what a table says
/// whole and factorized; the step must undo exactly the factorizations that are slower, and all of them when the model
/// before the step is faster than anything kept.
/// </summary>
public sealed class FactorizationLatencyTests
{
    private static readonly Dictionary<string, (double Whole, double Factorized)> Costs = new()
    {
        ["conv1"] = (1, 3),    // slower factorized: undo
        ["conv2"] = (4, 2),    // faster: keep
        ["fc1"] = (1, 1.01),   // the same within noise (smaller): keep
    };

    private static double Time(IReadOnlySet<string> undone) => 10 + Costs.Sum(c => undone.Contains(c.Key) ? c.Value.Whole : c.Value.Factorized);

    [Fact]
    public void A_factorization_measured_slower_is_undone_and_the_others_stay()
    {
        var choice = FactorizationLatency.Choose(Costs.Keys.ToList(), Time);
        Assert.Equal(["conv1"], choice.Undone);
        Assert.Equal(14.01, choice.Milliseconds, 6);
        Assert.Equal(16.01, choice.FactorizedMilliseconds, 6);
        Assert.Equal(16, choice.BeforeMilliseconds, 6);
        Assert.Contains("undone as measured slower: conv1; kept 2 of 3", choice.Note);
    }

    [Fact]
    public void Every_factorization_is_undone_when_the_model_before_the_step_is_faster()
    {
        // Each layer alone changes nothing; together the factorized model is slower than before.
        var choice = FactorizationLatency.Choose(["a", "b"], undone => undone.Count == 2 ? 10 : 12);
        Assert.Equal(["a", "b"], choice.Undone.Order());
        Assert.Contains("every factorization undone (2 layers)", choice.Note);
    }

    [Fact]
    public void Smaller_and_not_slower_is_kept()
    {
        var choice = FactorizationLatency.Choose(["a"], undone => undone.Count == 1 ? 10 : 10.1);
        Assert.Empty(choice.Undone);
        Assert.Contains("every factorization kept", choice.Note);
    }
}
