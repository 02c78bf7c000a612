global using Distcache.Apps.TicketKeys;

// Web servers on ports picked as free a moment before, and tests timed against rotation boundaries, on a 2-core
// machine: one test at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// One self-signed certificate for every web server of the run (nginx's session id context is derived from it).
[assembly: AssemblyFixture(typeof(Distcache.TicketKeys.Tests.Support.Certificate))]

// nginx, HAProxy, Apache, unix sockets, file modes, signals and /proc: these tests describe Linux (Debian) behaviour.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
