global using Distcache.Tools.Tests.Support;

// These tests start real processes and bind real ports: two test classes at a time keep a 2-core machine from
// timing out start-ups, and keep the load-mode tests from fighting each other for the CPU.
[assembly: CollectionBehavior(MaxParallelThreads = 2)]

// Unix sockets and signals: these tests describe Linux behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
