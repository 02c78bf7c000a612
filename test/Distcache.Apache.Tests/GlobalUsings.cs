// Two Apache servers, dc_client and dc_server per test class, on a 2-core machine: one class at a time, or the
// handshake timings the tests check would measure the other class's load.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// Builds libdistcache and the Apache modules once per run, for every class.
[assembly: AssemblyFixture(typeof(Distcache.Apache.Tests.Support.NativeBuild))]

// Apache, unix sockets, signals and /proc: these tests describe Linux (Debian) behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
