using System.Reflection;
using Compress.Spec;
using Compress.Spec.Methods;

namespace Compress.Core.Passes;

/// <summary>
/// Chooses the pass for a spec step through its method's descriptor. Passes register themselves with
/// <see cref="ImplementsMethodAttribute"/>, found once in this assembly; the spec reader has already refused methods
/// and schemes the catalog does not list, and a test checks that every method (and scheme) has exactly one pass.
/// </summary>
public static class PassRegistry
{
    private static readonly IReadOnlyDictionary<(string Method, string? Scheme), ConstructorInfo> Passes = Discover();

    /// <summary>Every (method, scheme) a pass implements, with the pass's type.</summary>
    public static IEnumerable<(string Method, string? Scheme, Type Pass)> Registered =>
        Passes.Select(p => (p.Key.Method, p.Key.Scheme, p.Value.DeclaringType!));

    /// <summary>The step's pass as reports name it: <c>prune/{method as written}</c>, <c>quantize/{scheme}</c>.</summary>
    public static string KeyOf(SpecStep step) => $"{step.Kind}/{step.Scheme ?? step.Method}";

    public static ICompressionPass Create(SpecStep step)
    {
        if (step is PruneStep { Channel: true } channel)
        {
            return new Pruning.Channels.ChannelPruner(channel); // a pattern of the prune methods, one pass for them all
        }

        var method = MethodCatalog.Of(step);
        return Passes.TryGetValue((method.Name, step.Scheme), out var constructor) ? (ICompressionPass)constructor.Invoke([step])
            : throw new InvalidOperationException($"no pass registered for '{KeyOf(step)}' ({method})");
    }

    private static Dictionary<(string, string?), ConstructorInfo> Discover()
    {
        var passes = new Dictionary<(string, string?), ConstructorInfo>();
        foreach (var type in typeof(PassRegistry).Assembly.GetTypes().Where(t => !t.IsAbstract && typeof(ICompressionPass).IsAssignableFrom(t)))
        {
            if (type.GetCustomAttribute<ImplementsMethodAttribute>() is not { } implements)
            {
                continue;
            }

            var constructor = type.GetConstructors().Single();
            foreach (var method in implements.Methods)
            {
                if (!passes.TryAdd((method, implements.Scheme), constructor))
                {
                    throw new InvalidOperationException($"{type.Name} and {passes[(method, implements.Scheme)].DeclaringType!.Name} both implement '{method}' {implements.Scheme}");
                }
            }
        }

        return passes;
    }
}
