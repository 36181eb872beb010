using Mono.Cecil;
using Mono.Cecil.Cil;

namespace Linearize.Tests.Architecture;

/// <summary>
/// Which namespaces of an assembly use which, read from the compiled assembly rather than from <c>using</c>
/// lines: a type in a child namespace sees its parents' types without any directive, and a fully qualified name
/// needs none either. Every reference counts — base types, interfaces, fields, signatures, locals, generic
/// arguments and each type, method or field an instruction names — with compiler-generated nested types
/// (closures, iterators, async state machines) charged to the type that declares them.
/// </summary>
internal static class NamespaceGraph
{
    /// <summary>Edges <c>(from, to)</c> between distinct namespaces of <paramref name="assemblyPath"/>, each with one
    /// example <c>FromType → ToType</c> so a failure names the code to look at.</summary>
    public static IReadOnlyDictionary<(string From, string To), string> Edges(string assemblyPath, string rootNamespace)
    {
        using var module = ModuleDefinition.ReadModule(assemblyPath);
        var edges = new Dictionary<(string, string), string>();
        foreach (var type in module.GetTypes())
        {
            var owner = TopLevel(type);
            if (!owner.Namespace.StartsWith(rootNamespace, StringComparison.Ordinal))
                continue;
            foreach (var used in ReferencedTypes(type))
            {
                var target = Resolve(used, module);
                if (target is null)
                    continue;
                target = TopLevel(target);
                if (target.Namespace == owner.Namespace || !target.Namespace.StartsWith(rootNamespace, StringComparison.Ordinal))
                    continue;
                edges.TryAdd((owner.Namespace, target.Namespace), $"{owner.FullName} → {target.FullName}");
            }
        }

        return edges;
    }

    private static TypeDefinition TopLevel(TypeDefinition type)
    {
        while (type.DeclaringType is not null)
            type = type.DeclaringType;
        return type;
    }

    /// <summary>Only types defined in this module count; references into other assemblies are not edges.</summary>
    private static TypeDefinition? Resolve(TypeReference reference, ModuleDefinition module)
    {
        while (reference is TypeSpecification spec)
        {
            if (reference is FunctionPointerType)
                return null; // no element type; Expand yields its signature's types
            reference = spec.ElementType;
        }
        if (reference is GenericParameter)
            return null;
        if (reference.Scope is ModuleDefinition m && m == module || reference is TypeDefinition)
            return reference.Resolve();
        return null;
    }

    private static IEnumerable<TypeReference> ReferencedTypes(TypeDefinition type)
    {
        if (type.BaseType is not null)
            foreach (var t in Expand(type.BaseType))
                yield return t;
        foreach (var i in type.Interfaces)
            foreach (var t in Expand(i.InterfaceType))
                yield return t;
        foreach (var f in type.Fields)
            foreach (var t in Expand(f.FieldType))
                yield return t;
        foreach (var p in type.Properties)
            foreach (var t in Expand(p.PropertyType))
                yield return t;
        foreach (var method in type.Methods)
        {
            foreach (var t in SignatureTypes(method))
                yield return t;
            if (!method.HasBody)
                continue;
            foreach (var v in method.Body.Variables)
                foreach (var t in Expand(v.VariableType))
                    yield return t;
            foreach (var instruction in method.Body.Instructions)
                foreach (var t in OperandTypes(instruction))
                    yield return t;
        }
    }

    private static IEnumerable<TypeReference> SignatureTypes(MethodReference method)
    {
        foreach (var t in Expand(method.ReturnType))
            yield return t;
        foreach (var p in method.Parameters)
            foreach (var t in Expand(p.ParameterType))
                yield return t;
        if (method is GenericInstanceMethod g)
            foreach (var a in g.GenericArguments)
                foreach (var t in Expand(a))
                    yield return t;
    }

    private static IEnumerable<TypeReference> OperandTypes(Instruction instruction)
    {
        switch (instruction.Operand)
        {
            case TypeReference t:
                foreach (var x in Expand(t))
                    yield return x;
                break;
            case MethodReference m:
                foreach (var x in Expand(m.DeclaringType))
                    yield return x;
                foreach (var x in SignatureTypes(m))
                    yield return x;
                break;
            case FieldReference f:
                foreach (var x in Expand(f.DeclaringType))
                    yield return x;
                foreach (var x in Expand(f.FieldType))
                    yield return x;
                break;
        }
    }

    /// <summary>A type and, for generic instances, arrays and pointers, the types inside it; for a function pointer, the
    /// types of its signature.</summary>
    private static IEnumerable<TypeReference> Expand(TypeReference type)
    {
        if (type is FunctionPointerType pointer)
        {
            // An unmanaged function pointer (delegate* …): the types of its signature are what it references.
            foreach (var t in Expand(pointer.ReturnType).Concat(pointer.Parameters.SelectMany(p => Expand(p.ParameterType))))
                yield return t;
            yield break;
        }

        yield return type;
        if (type is GenericInstanceType g)
            foreach (var a in g.GenericArguments)
                foreach (var t in Expand(a))
                    yield return t;
        if (type is TypeSpecification spec)
            foreach (var t in Expand(spec.ElementType))
                yield return t;
    }
}
