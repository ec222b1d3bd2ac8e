namespace Compress.Core.Reports;

/// <summary>
/// A per-layer allocation (issue 16): the budget it met, the solver, each layer's sensitivity and choice with the
/// options it chose from, and every compress-and-evaluate round that corrected the proxy against measured fidelity.
/// </summary>
/// <param name="Solver"><c>dp</c> (exact dynamic program) or <c>anneal</c> (the QUBO by simulated annealing).</param>
/// <param name="Budget">The budget in words, e.g. <c>bytes ≤ 53,330 (0.050 of the source)</c> or <c>10.0% of the weights kept</c>.</param>
/// <param name="Objective">The proxy objective of the chosen allocation (Σ over layers of the chosen option's error).</param>
/// <param name="LayerBudget">The budget as the solver saw it: Σ over the layers of their chosen options' cost may not exceed it (bytes, or weights kept).</param>
public sealed record AllocationFigures(string Solver, string Budget, double Objective, IReadOnlyList<AllocatedLayer> Layers, IReadOnlyList<AllocationRound> Rounds, long LayerBudget = 0);

/// <summary>One layer: its loss sensitivity (Hutchinson trace of the loss Hessian over its weights per weight, or 0 when not measured), its choice and the bytes the writer stores for it.</summary>
public sealed record AllocatedLayer(string Weight, string Node, long Parameters, double Sensitivity, double Sparsity, int Bits, long Bytes, IReadOnlyList<AllocationOption> Options);

/// <summary>One option of a layer in the error database: sparsity, bits, its stored bytes and its proxy error.</summary>
public sealed record AllocationOption(double Sparsity, int Bits, long Bytes, double Error);

/// <summary>One full compress-and-evaluate round: what it tried (<paramref name="Label"/>), the artifact's bytes and the measured fidelity.</summary>
public sealed record AllocationRound(int Round, string Label, long Bytes, double? Accuracy, double? Agreement, double? Cosine, bool Chosen);
