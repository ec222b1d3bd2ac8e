namespace System.Runtime.CompilerServices
{
    /// <summary>Lets records compile for netstandard2.0 (the type exists from .NET 5 on).</summary>
    internal static class IsExternalInit
    {
    }
}
