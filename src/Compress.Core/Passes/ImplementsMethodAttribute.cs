namespace Compress.Core.Passes;

/// <summary>
/// Marks a pass as the implementation of methods of <see cref="Spec.Methods.MethodCatalog"/>: for kinds with schemes
/// (quantize), of the scheme it writes for each method named. <see cref="PassRegistry"/> finds the passes by it; the
/// pass has one public constructor taking the step.
/// </summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false, Inherited = false)]
public sealed class ImplementsMethodAttribute(params string[] methods) : Attribute
{
    /// <summary>The methods' names (<c>XxxMethod.Name</c>), not aliases.</summary>
    public IReadOnlyList<string> Methods { get; } = methods;

    /// <summary>The scheme the pass writes (<see cref="Spec.Methods.QuantizeSchemes"/>), or null for kinds without schemes.</summary>
    public string? Scheme { get; init; }
}
