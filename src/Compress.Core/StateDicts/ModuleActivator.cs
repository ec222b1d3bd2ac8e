using System.Globalization;
using System.Reflection;
using System.Runtime.Loader;
using Compress.Core.Diagnostics;
using Compress.Spec;
using static TorchSharp.torch;

namespace Compress.Core.StateDicts;

/// <summary>
/// Builds the app's TorchSharp module that the spec's <c>module</c> names (<see cref="ModuleSpec"/>), so a state dict can
/// run. The assembly is the spec's <c>assembly</c> file, else the file among the host's references whose name is the
/// type's assembly, else an assembly already loaded under that name. It loads into its own context that takes
/// TorchSharp and the framework from the engine's, so the module's tensors are the engine's; its other dependencies
/// come from the host's references, its .deps.json or its folder. A module built against another TorchSharp version
/// (major.minor) is refused with the two versions named, and a reference assembly (no code) is refused. The constructor is the public one with the
/// fewest parameters that takes the spec's <c>arguments</c> (numbers, strings, booleans, enum names), optional
/// parameters after them taking their defaults. Every failure is CMP0083 or CMP0084 at the <c>module</c> object.
/// </summary>
internal static class ModuleActivator
{
    private static readonly Dictionary<string, Assembly> Loaded = new(StringComparer.Ordinal);

    /// <summary>A new module of the spec's type, in eval mode.</summary>
    public static nn.Module<Tensor, Tensor> Create(ModuleSpec module, string specFile)
    {
        var assembly = Assembly(module, specFile);
        var (theirs, ours) = TorchSharpVersions(assembly);
        if (theirs is not null && (theirs.Major != ours.Major || theirs.Minor != ours.Minor))
        {
            throw Error(DiagnosticCodes.ModuleNotBuilt,
                $"'{assembly.GetName().Name}' was built against TorchSharp {theirs.ToString(3)}, and Compress.Build runs TorchSharp {ours.ToString(3)}: build the module's library against {ours.ToString(2)}", module, specFile);
        }

        Type? type;
        try
        {
            type = assembly.GetType(module.TypeName, throwOnError: false);
        }
        catch (Exception e) when (e is FileLoadException or FileNotFoundException or TypeLoadException or BadImageFormatException)
        {
            throw Error(DiagnosticCodes.ModuleTypeNotFound, $"cannot load '{module.TypeName}' from {assembly.Location}: {e.Message}{VersionHint(e, assembly)}", module, specFile, e);
        }

        if (type is null)
        {
            throw Error(DiagnosticCodes.ModuleTypeNotFound, $"'{assembly.GetName().Name}' ({assembly.Location}) has no type '{module.TypeName}'", module, specFile);
        }

        if (!typeof(nn.Module<Tensor, Tensor>).IsAssignableFrom(type) || type.IsAbstract)
        {
            throw Error(DiagnosticCodes.ModuleNotBuilt,
                $"'{type.FullName}' is not a TorchSharp module with one tensor in and one out (a concrete class deriving from Module<Tensor, Tensor>)", module, specFile);
        }

        var constructors = type.GetConstructors().OrderBy(c => c.GetParameters().Length).ThenBy(c => c.MetadataToken).ToList();
        foreach (var constructor in constructors)
        {
            if (Arguments(constructor.GetParameters(), module.Arguments) is not { } arguments)
            {
                continue;
            }

            try
            {
                var built = (nn.Module<Tensor, Tensor>)constructor.Invoke(arguments);
                built.eval();
                return built;
            }
            catch (Exception e) when (e is TargetInvocationException or MemberAccessException or TypeLoadException or FileLoadException)
            {
                var inner = e is TargetInvocationException { InnerException: { } cause } ? cause : e;
                throw Error(DiagnosticCodes.ModuleNotBuilt,
                    $"the constructor {Signature(constructor)} threw {inner.GetType().Name}: {inner.Message}{VersionHint(inner, assembly)}", module, specFile, e);
            }
        }

        var given = module.Arguments.Count == 0 ? "no arguments" : "the arguments (" + string.Join(", ", module.Arguments.Select(Show)) + ")";
        throw Error(DiagnosticCodes.ModuleNotBuilt,
            $"no public constructor of '{type.FullName}' takes {given}; it has {(constructors.Count == 0 ? "none" : string.Join("; ", constructors.Select(Signature)))}. Set 'arguments' in 'module' to match one",
            module, specFile);
    }

    /// <summary>The assembly that holds the type: the spec's file, a reference by name, or one already loaded by name.</summary>
    private static Assembly Assembly(ModuleSpec module, string specFile)
    {
        var path = module.AssemblyPath ?? ModuleSpec.FindAssembly(module.References, module.AssemblyName);
        if (path is null)
        {
            return AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a => a.GetName().Name == module.AssemblyName)
                ?? throw Error(DiagnosticCodes.ModuleTypeNotFound,
                    $"the assembly '{module.AssemblyName}' of '{module.TypeName}' is not among the project's references: reference the project or package that defines it, or give the file in the module's 'assembly'",
                    module, specFile);
        }

        var full = Path.GetFullPath(path);
        lock (Loaded)
        {
            if (Loaded.TryGetValue(full, out var known))
            {
                return known;
            }

            try
            {
                var loaded = new ModuleLoadContext(full, module.References).LoadFromAssemblyPath(full);
                Loaded[full] = loaded;
                return loaded;
            }
            catch (Exception e) when (e is IOException or BadImageFormatException or ArgumentException)
            {
                var hint = e is BadImageFormatException && e.Message.Contains("reference assembly", StringComparison.OrdinalIgnoreCase)
                    ? " — a reference assembly holds no code: give the runtime assembly (the project's bin folder, or the package's lib folder) in the module's 'assembly'"
                    : "";
                throw Error(DiagnosticCodes.ModuleTypeNotFound, $"cannot load the module's assembly {full}: {e.Message}{hint}", module, specFile, e);
            }
        }
    }

    /// <summary>The spec's arguments converted to the parameters' types, defaults after them; null when they do not fit.</summary>
    private static object?[]? Arguments(ParameterInfo[] parameters, IReadOnlyList<object> given)
    {
        if (given.Count > parameters.Length || parameters.Skip(given.Count).Any(p => !p.HasDefaultValue))
        {
            return null;
        }

        var values = new object?[parameters.Length];
        for (var i = 0; i < parameters.Length; i++)
        {
            if (i >= given.Count)
            {
                values[i] = parameters[i].DefaultValue;
                continue;
            }

            var type = Nullable.GetUnderlyingType(parameters[i].ParameterType) ?? parameters[i].ParameterType;
            if (Convert(given[i], type) is not { } value)
            {
                return null;
            }

            values[i] = value;
        }

        return values;
    }

    private static object? Convert(object value, Type type) => value switch
    {
        string s when type == typeof(string) => s,
        string s when type.IsEnum => Enum.TryParse(type, s, ignoreCase: true, out var e) ? e : null,
        bool b when type == typeof(bool) => b,
        double d when type == typeof(double) => d,
        double d when type == typeof(float) => (float)d,
        double d when d == Math.Floor(d) && type == typeof(int) && d is >= int.MinValue and <= int.MaxValue => (int)d,
        double d when d == Math.Floor(d) && type == typeof(long) && Math.Abs(d) <= 9007199254740992 => (long)d,
        _ => null,
    };

    private static string Show(object value) => value switch
    {
        string s => $"\"{s}\"",
        bool b => b ? "true" : "false",
        double d => d.ToString(CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static string Signature(ConstructorInfo constructor) =>
        $"{constructor.DeclaringType!.Name}({string.Join(", ", constructor.GetParameters().Select(p => $"{p.ParameterType.Name} {p.Name}{(p.HasDefaultValue ? " = " + (p.DefaultValue ?? "null") : "")}"))})";

    /// <summary>When the failure is a missing member or type, the module was likely built against another TorchSharp.</summary>
    private static string VersionHint(Exception e, Assembly assembly)
    {
        if (e is not (MissingMemberException or TypeLoadException or FileLoadException))
        {
            return "";
        }

        var (theirs, ours) = TorchSharpVersions(assembly);
        return theirs is null || theirs == ours ? "" : $" (the module was built against TorchSharp {theirs}; Compress.Build runs TorchSharp {ours}: build it against that version)";
    }

    /// <summary>The TorchSharp version the module's assembly was built against (null: it names none) and the one the engine runs.</summary>
    private static (Version? Theirs, Version Ours) TorchSharpVersions(Assembly assembly) =>
        (assembly.GetReferencedAssemblies().FirstOrDefault(a => a.Name == "TorchSharp")?.Version, typeof(nn.Module).Assembly.GetName().Version!);

    private static CompressException Error(string code, string message, ModuleSpec module, string specFile, Exception? inner = null) =>
        CompressException.Error(code, message, specFile, module.Line, module.Column, inner);

    /// <summary>
    /// The context the module's assembly loads into: what the engine has (TorchSharp, the framework) comes from the
    /// engine's context; the rest from the host's references by name, the assembly's .deps.json, or its folder.
    /// </summary>
    private sealed class ModuleLoadContext(string path, IReadOnlyList<string> references) : AssemblyLoadContext("compress-module " + Path.GetFileName(path))
    {
        private readonly string _folder = Path.GetDirectoryName(path)!;
        private readonly AssemblyDependencyResolver? _resolver = Resolver(path);

        protected override System.Reflection.Assembly? Load(AssemblyName name)
        {
            if (Default.Assemblies.FirstOrDefault(a => a.GetName().Name == name.Name) is { } shared)
            {
                return shared;
            }

            try
            {
                return Default.LoadFromAssemblyName(name);
            }
            catch (FileNotFoundException)
            {
                var file = ModuleSpec.FindAssembly(references, name.Name)
                    ?? _resolver?.ResolveAssemblyToPath(name) ?? Path.Combine(_folder, name.Name + ".dll");
                return File.Exists(file) ? LoadFromAssemblyPath(file) : null;
            }
        }

        /// <summary>The resolver of the assembly's .deps.json, or null where it has none (or one the host cannot read): then its folder.</summary>
        private static AssemblyDependencyResolver? Resolver(string path)
        {
            try
            {
                return File.Exists(Path.ChangeExtension(path, ".deps.json")) ? new AssemblyDependencyResolver(path) : null;
            }
            catch (InvalidOperationException)
            {
                return null;
            }
        }

        protected override IntPtr LoadUnmanagedDll(string unmanagedDllName) =>
            _resolver?.ResolveUnmanagedDllToPath(unmanagedDllName) is { } file ? LoadUnmanagedDllFromPath(file) : IntPtr.Zero;
    }
}
