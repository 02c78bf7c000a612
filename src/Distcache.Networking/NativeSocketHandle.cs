using System.Runtime.InteropServices;

namespace Distcache.Networking;

/// <summary>
/// A socket descriptor accepted on an event loop (<see cref="NativeAcceptor"/>), owned without a runtime
/// <see cref="System.Net.Sockets.Socket"/> around it: releasing it is a plain <c>close</c>.
/// </summary>
/// <remarks>
/// Making a <see cref="System.Net.Sockets.Socket"/> over a descriptor costs seven system calls (the runtime asks the
/// socket's domain, type, protocol, listening state, flags, and both addresses), which a connection that only
/// lives for one request cannot afford. <see cref="NetworkConnection.Socket"/> makes one on demand, as a view that
/// does not own the descriptor. As a <see cref="SafeHandle"/> it is reference counted: a close from another thread
/// waits until no system call uses the number any more.
/// </remarks>
internal sealed class NativeSocketHandle : SafeHandle
{
    public NativeSocketHandle(int descriptor)
        : base(-1, ownsHandle: true)
    {
        SetHandle(descriptor);
    }

    /// <inheritdoc/>
    public override bool IsInvalid => handle < 0;

    /// <summary>The descriptor's number; valid while the handle is not closed.</summary>
    public nint Descriptor => handle;

    /// <inheritdoc/>
    protected override bool ReleaseHandle() => NativeMethods.Close(handle) == 0;
}
