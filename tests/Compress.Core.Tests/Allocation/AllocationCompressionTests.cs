using Compress.Core.Torch;
using Compress.Core.Diagnostics;
using Compress.Core.Plans;
using Compress.Core.Reports;
using Compress.Core.Tests.TestSupport;
using Xunit.Abstractions;

namespace Compress.Core.Tests.Allocation;

/// <summary>
/// The allocation engine on the project's Fashion-MNIST MLP (784-300-100-10), one shot: 512 seeded calibration images,
/// the 10,000-image test set for evaluation.
/// </summary>
public sealed class AllocationCompressionTests(ITestOutputHelper output) : TempDirectoryTest
{
    [Fact]
    public void Global_obs_takes_its_layer_shares_from_the_allocation_and_keeps_exactly_its_budget()
    {
        var report = Compress("""{ "prune": { "method": "obs", "sparsity": 0.9 } }""");
        var allocation = report.Allocation!;
        Assert.Equal("dp", allocation.Solver);
        Assert.Equal(3, allocation.Layers.Count);
        Assert.InRange(report.Size.OverallSparsity, 0.898, 0.902); // the budget exactly, up to OBS's whole weights per block
        // Each layer its own sparsity (the small, sensitive classifier far less than fc1), each from the database's options.
        var sparsities = report.Layers.ToDictionary(l => l.Node, l => l.Sparsity);
        Assert.True(sparsities["fc3"] < sparsities["fc1"] - 0.2, string.Join(", ", sparsities));
        Assert.All(allocation.Layers, l => Assert.True(l.Options.Count >= 20));
        Assert.Contains(report.Notes, n => n.StartsWith("prune/obs: per-layer sparsity allocated by dynamic programming", StringComparison.Ordinal));
        // Better than one magnitude threshold's shares (83.41% in docs/cli/run.md at 90%); dense 89.29%.
        Assert.True(Accuracy(report) >= 0.84, $"accuracy {Accuracy(report):P2}");
    }

    [Fact]
    public void A_size_budget_is_met_by_mixed_sparsity_and_bits_and_the_rounds_pick_the_best_proxy()
    {
        var report = Compress("""
            { "allocate": { "size": 0.08 } },
            { "prune": { "method": "obs" } },
            { "quantize": { "weights": "int8", "activations": "none" } }
            """.Replace("\"activations\": \"none\"", "\"activations\": \"dynamic\""));
        var allocation = report.Allocation!;
        Assert.True(report.Size.CompressedBytes <= 0.08 * report.Size.OriginalBytes, $"{report.Size.CompressedBytes:N0} bytes");
        Assert.Equal(3, allocation.Rounds.Count);
        var chosen = Assert.Single(allocation.Rounds, r => r.Chosen);
        Assert.Equal(report.Metrics!.CompressedAccuracy, chosen.Accuracy);
        Assert.All(allocation.Rounds.Where(r => r.Bytes <= report.Size.OriginalBytes * 0.08), r => Assert.True(r.Accuracy <= chosen.Accuracy));
        // The report's layers are what the allocation chose: at least the allocated sparsity, bits as allocated (8, or 32 kept float).
        foreach (var layer in allocation.Layers)
        {
            var written = report.Layers.Single(l => l.Weight == layer.Weight);
            Assert.True(written.Sparsity >= layer.Sparsity - 0.005, $"{layer.Node}: {written.Sparsity:P1} written, {layer.Sparsity:P1} allocated"); // int8 rounding adds zeros
            Assert.Equal(layer.Bits, written.Bits);
        }

        Assert.True(Accuracy(report) >= 0.85, $"accuracy {Accuracy(report):P2} at {report.Size.Ratio:0.###}");
    }

    [Fact]
    public void Without_a_budget_the_rounds_find_the_smallest_artifact_meeting_the_constraint_smaller_than_uniform_int8()
    {
        var uniform = Compress("""{ "quantize": { "weights": "int8", "activations": "dynamic" } }""");
        var report = Compress("""
            { "allocate": { "rounds": 6 } },
            { "prune": { "method": "obs" } },
            { "quantize": { "weights": "int8", "activations": "dynamic" } }
            """, """{ "maxAccuracyDrop": 0.01 }""");
        var rounds = report.Allocation!.Rounds;
        output.WriteLine(string.Join("\n", rounds.Select(r => $"{r.Label}: {r.Bytes:N0} B, {r.Accuracy:P2}{(r.Chosen ? " (chosen)" : "")}")));
        Assert.InRange(rounds.Count, 2, 6);
        // A drop of exactly 1.00 point (100 of 10,000 samples) meets the constraint, as the fidelity gate counts it (1e-12).
        Assert.True(report.Metrics!.AccuracyDrop <= 0.01 + 1e-12, $"drop {report.Metrics.AccuracyDrop:P2}");
        Assert.Equal(rounds.Where(r => r.Accuracy is { } a && report.Metrics.OriginalAccuracy - a <= 0.01 + 1e-12).Min(r => r.Bytes), rounds.Single(r => r.Chosen).Bytes);
        Assert.True(report.Size.CompressedBytes < uniform.Size.CompressedBytes / 2,
            $"{report.Size.CompressedBytes:N0} bytes vs uniform int8 {uniform.Size.CompressedBytes:N0} at accuracy {Accuracy(report):P2} vs {Accuracy(uniform):P2}");
    }

    [Fact]
    public void Annealing_the_qubo_allocates_as_well_as_the_dynamic_program_and_both_are_deterministic()
    {
        const string steps = """
            { "allocate": { "method": "{0}", "size": 0.1, "rounds": 1 } },
            { "prune": { "method": "obs" } }
            """;
        var dp = Compress(steps.Replace("{0}", "dp"), outputName: "dp.onnx");
        var anneal = Compress(steps.Replace("{0}", "anneal"), outputName: "anneal.onnx");
        var again = Compress(steps.Replace("{0}", "anneal"), outputName: "again.onnx");
        Assert.Equal("anneal", anneal.Allocation!.Solver);
        Assert.True(anneal.Allocation.Objective <= dp.Allocation!.Objective * 1.01, $"anneal {anneal.Allocation.Objective} vs DP {dp.Allocation.Objective}");
        Assert.Equal(File.ReadAllBytes(anneal.Output), File.ReadAllBytes(again.Output));
    }

    /// <summary>
    /// With a pack step, the allocation chooses each layer's sparsity and shared-value bits (2–6), costed by the entropy
    /// the packed file spends, and the rounds hold the measured .cpack under the budget.
    /// </summary>
    [Fact]
    public void A_pack_step_takes_its_bits_per_layer_from_the_allocation_under_a_size_budget()
    {
        var report = Compress("""
            { "allocate": { "size": 0.05, "sensitivity": "none", "rounds": 3 } },
            { "prune": { "method": "obs" } },
            { "pack": { } }
            """, outputName: "out.cpack");
        var allocation = report.Allocation!;
        Assert.True(report.Size.CompressedBytes <= 0.05 * report.Size.OriginalBytes, $"{report.Size.CompressedBytes:N0} bytes");
        Assert.All(allocation.Layers, l => Assert.InRange(l.Bits, 2, 6));
        foreach (var layer in allocation.Layers)
        {
            Assert.Equal(layer.Bits, report.Layers.Single(l => l.Weight == layer.Weight).Bits);
        }

        Assert.True(Accuracy(report) >= 0.87, $"accuracy {Accuracy(report):P2} at {report.Size.Ratio:0.###}");
    }

    /// <summary>
    /// One round has no measurement to correct the size estimate by: at size 0.1 with dynamic int8 the MLP comes out
    /// 108,361 bytes against a budget of 106,696 — shipped, with CMP0052 saying so.
    /// </summary>
    [Fact]
    public void A_one_round_allocation_over_its_budget_is_warned_about()
    {
        var report = Compress("""
            { "allocate": { "size": 0.1, "rounds": 1 } },
            { "prune": { "method": "obs" } },
            { "quantize": { "weights": "int8", "activations": "dynamic" } }
            """);
        var budget = 0.1 * report.Size.OriginalBytes;
        Assert.True(report.Size.CompressedBytes > budget, $"{report.Size.CompressedBytes:N0} bytes");
        var warning = Assert.Single(report.Warnings!, w => w.Code == DiagnosticCodes.AllocationOverBudget);
        Assert.Contains("give 'rounds' of 2 or more", warning.Message);
        Assert.DoesNotContain(Compress("""
            { "allocate": { "size": 0.1, "rounds": 2, "sensitivity": "none" } },
            { "prune": { "method": "obs" } },
            { "quantize": { "weights": "int8", "activations": "dynamic" } }
            """, outputName: "rounds.onnx").Warnings!, w => w.Code == DiagnosticCodes.AllocationOverBudget);
    }

    /// <summary>
    /// An N:M pattern under an allocation: each layer is either the pattern or dense, chosen under the size budget. At 0.6
    /// of the source fc1 (88 % of the weights) must take 2:4; the small, sensitive fc2 and fc3 can stay dense, and do.
    /// </summary>
    [Theory]
    [InlineData("obs")]
    [InlineData("magnitude")]
    public void An_n_m_pattern_goes_where_the_budget_needs_it_and_the_other_layers_stay_dense(string method)
    {
        var uniform = Compress($$"""{ "prune": { "method": "{{method}}", "pattern": "2:4", "sparsity": 0.5 } }""", outputName: "uniform.onnx");
        var report = Compress($$"""
            { "allocate": { "size": 0.6, "rounds": 1, "sensitivity": "none" } },
            { "prune": { "method": "{{method}}", "pattern": "2:4" } }
            """);
        output.WriteLine($"{method} 2:4: every layer {Accuracy(uniform):P2} ({uniform.Size.CompressedBytes:N0} B), allocated {Accuracy(report):P2} ({report.Size.CompressedBytes:N0} B)");
        Assert.True(report.Size.CompressedBytes <= 0.6 * report.Size.OriginalBytes, $"{report.Size.CompressedBytes:N0} bytes");
        Assert.All(report.Allocation!.Layers, l => Assert.Equal([0.0, 0.5], l.Options.Select(o => o.Sparsity)));
        var sparsity = report.Allocation.Layers.ToDictionary(l => l.Node, l => l.Sparsity);
        Assert.Equal(0.5, sparsity["fc1"]);
        Assert.Equal(0.0, sparsity["fc3"]);

        // The weights as ONNX Runtime computes them (pruned ones are stored as bitmasks and decoded in the graph).
        var model = global::Compress.Core.Onnx.OnnxModel.Load(report.Output);
        var source = global::Compress.Core.Onnx.OnnxModel.Load(FashionData.MlpModel);
        var inputs = report.Allocation.Layers.ToDictionary(l => l.Node, l => model.Graph.Nodes.Single(n => n.Name == l.Node).Input[1]);
        var data = global::Compress.Core.Calibration.CalibrationSet.Load(FashionData.Calibration(false), model, null, 1, 0);
        using var runner = global::Compress.Core.Evaluation.OrtModelRunner.Exposing(model, inputs.Values);
        using var values = runner.RunBatch(data, 0, 1, [.. inputs.Values]);
        var decoded = inputs.Keys.Zip(values).ToDictionary(p => p.First, p => global::Compress.Core.Passes.SecondOrder.LayerHessian.ToTorch(p.Second));
        foreach (var layer in report.Allocation.Layers)
        {
            var weight = decoded[layer.Node];
            if (layer.Sparsity == 0)
            {
                Assert.True(weight.eq(source.ToTorch(source.Graph.GetInitializer(layer.Weight)!)).all().item<bool>(), $"{layer.Node} changed");
                continue;
            }

            // 2:4 along the inputs: in every group of 4 consecutive inputs of a row (Gemm weights are [out, in]), at most 2 kept.
            var kept = weight.ne(0).reshape(weight.shape[0], -1, 4).sum(2);
            Assert.True(kept.le(2).all().item<bool>(), $"{layer.Node} is not 2:4");
            Assert.Equal(0.5, layer.Sparsity);
        }

        Assert.True(Accuracy(report) > Accuracy(uniform), $"{Accuracy(uniform):P2} → {Accuracy(report):P2}");
    }

    [Fact]
    public void A_budget_below_what_the_layers_can_reach_is_refused_and_nothing_is_written()
    {
        var error = Assert.Throws<CompressException>(() => Compress("""
            { "allocate": { "bytes": 3000, "rounds": 1 } },
            { "prune": { "method": "obs" } }
            """));
        Assert.Equal(DiagnosticCodes.BudgetUnreachable, error.Diagnostic.Code);
        Assert.Contains("3,000 bytes cannot be met", error.Message);
        Assert.False(File.Exists(Path.Combine(Dir, "out.onnx")));
    }

    [Fact]
    public void The_plan_records_the_allocation_as_its_source()
    {
        var plan = new CompressionPlan();
        var step = new Compress.Spec.PruneStep { Sparsity = 0 };
        plan.Allocate(step, new LayerPlan("w", PlanSource.Step) { Sparsity = 0.7 });
        Assert.True(plan.IsAllocated(step));
        Assert.Equal(PlanSource.Allocation, plan.For(step, "w").Source);
        Assert.Equal(0.7, plan.For(step, "w").Sparsity);
    }

    private static double Accuracy(CompressionReport report) => report.Metrics!.CompressedAccuracy!.Value;

    private CompressionReport Compress(string steps, string constraints = """{ "minAgreement": 0 }""", string outputName = "out.onnx")
    {
        var spec = SpecFiles.Load(Dir, $$"""
        {
          "data": {
            "calibration": { "path": {{SpecFiles.Quote(FashionData.Calibration(false))}}, "samples": 512, "seed": 7 },
            "evaluation": { "path": {{SpecFiles.Quote(FashionData.Test(false))}}, "labels": "labels" }
          },
          "steps": [ {{steps}} ], "constraints": {{constraints}}
        }
        """);
        var report = CompressionPipeline.Run(FashionData.MlpModel, spec, Path.Combine(Dir, outputName), measureLatency: false);
        output.WriteLine(ReportWriter.Markdown(report));
        return report;
    }
}
