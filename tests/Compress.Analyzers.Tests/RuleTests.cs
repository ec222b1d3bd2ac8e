using Microsoft.CodeAnalysis;

namespace Compress.Analyzers.Tests;

public sealed class RuleTests
{
    [Fact]
    public void Every_rule_has_a_help_page_and_a_release_entry()
    {
        var root = Compress.Tests.Shared.Repository.Root;
        var rules = typeof(Rules).GetFields().Where(f => f.FieldType == typeof(DiagnosticDescriptor)).Select(f => (DiagnosticDescriptor)f.GetValue(null)!).ToList();
        var releases = File.ReadAllText(Path.Combine(root, "src", "Compress.Analyzers", "AnalyzerReleases.Unshipped.md"));
        Assert.Equal(5, rules.Count);
        foreach (var rule in rules)
        {
            Assert.Matches("^CMP2[0-9]{3}$", rule.Id);
            var page = Path.Combine(root, "docs", "diagnostics", rule.Id + ".md");
            Assert.True(File.Exists(page), $"{rule.Id} has no help page");
            Assert.StartsWith($"# {rule.Id}: {rule.Title}", File.ReadAllText(page), StringComparison.Ordinal);
            Assert.Contains($"{rule.Id} | Compress.Build | {rule.DefaultSeverity} | {rule.Title}", releases, StringComparison.Ordinal);
        }
    }
}
