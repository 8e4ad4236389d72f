using LeakTools.Core.Hosting;

[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]

// fd 3 carries requests in, fd 4 replies out (JSON lines); see HelperServer.
return HelperServer.RunOnDescriptors(3, 4);
