using System.Management.Automation;
using LeakTools.Core.Interop;

namespace LeakTools;

/// <summary>Runs when Import-Module loads LeakTools.dll: a module installed from a .nupkg
/// (Install-PSResource) lost its files' execute bits in the zip; they are restored here.</summary>
public sealed class ModuleInitializer : IModuleAssemblyInitializer
{
    public void OnImport()
    {
        string? dir = Path.GetDirectoryName(typeof(ModuleInitializer).Assembly.Location);
        if (!string.IsNullOrEmpty(dir)) NativeAssetModes.Restore(dir);
    }
}
