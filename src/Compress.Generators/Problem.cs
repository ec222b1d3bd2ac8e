using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.Text;

namespace Compress.Generators
{
    /// <summary>A diagnostic as plain values (so generator steps stay equatable and cacheable), made real at the end.</summary>
    internal sealed record Problem(DiagnosticDescriptor Descriptor, string Path, int Line, int Column, params string[] Arguments)
    {
        public Diagnostic ToDiagnostic()
        {
            var position = new LinePosition(System.Math.Max(0, Line - 1), System.Math.Max(0, Column - 1));
            var location = Location.Create(Path, default, new LinePositionSpan(position, position));
            return Diagnostic.Create(Descriptor, location, Arguments);
        }

        public bool Equals(Problem? other) =>
            other is not null && Descriptor.Id == other.Descriptor.Id && Path == other.Path && Line == other.Line && Column == other.Column
            && System.Linq.Enumerable.SequenceEqual(Arguments, other.Arguments);

        public override int GetHashCode() => (Descriptor.Id, Path, Line, Column, Arguments.Length).GetHashCode();
    }
}
