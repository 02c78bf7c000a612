using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using static Distcache.Networking.NativeMethods;

namespace Distcache.Networking;

/// <summary>
/// Connects a stream socket without the runtime's socket engine, so that the connection can go on the native
/// transport (<see cref="SocketPipes"/>) afterwards.
/// </summary>
/// <remarks>
/// <para>The runtime registers a socket with its own <c>epoll</c> set at the socket's first asynchronous operation,
/// <c>ConnectAsync</c> included, and never unregisters it. A socket in two sets wakes both threads for every
/// packet, so a connection the process makes itself could not use the native transport. Here the descriptor is
/// made non-blocking, <c>connect</c> is called on it directly, and when the kernel answers "in progress" (TCP) the
/// wait for the handshake is a registration with one of the native transport's event loops, removed once the
/// socket is writable. Only then does the runtime see the socket: a <see cref="Socket"/> made over the connected,
/// blocking descriptor, which the runtime has never registered anywhere.</para>
/// <para>Registration comes after <c>connect</c>, not before: a TCP socket that has not started connecting
/// reports itself writable and hung up, which would end the wait at once.</para>
/// </remarks>
internal static class NativeConnect
{
    /// <summary>Connects to <paramref name="endPoint"/> (IPv4, IPv6 or unix).</summary>
    /// <returns>A connected, blocking socket that the runtime's socket engine has not registered.</returns>
    /// <exception cref="SocketException">The socket could not be made, or the connection was refused or failed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was canceled first.</exception>
    public static async ValueTask<Socket> ConnectAsync(EndPoint endPoint, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();

        // On Linux a SocketAddress holds the platform's own struct sockaddr, family first in host order.
        SocketAddress address = endPoint.Serialize();
        byte[] native = address.Buffer.Span[..address.Size].ToArray();
        int family = BitConverter.ToUInt16(native, 0);

        int descriptor = CreateSocket(family, SockStream | SockNonBlock | SockCloexec, 0);
        if (descriptor < 0)
        {
            throw Failure(Marshal.GetLastPInvokeError());
        }

        var handle = new SafeSocketHandle(descriptor, ownsHandle: true);
        try
        {
            if (Connect(descriptor, ref native[0], native.Length) != 0)
            {
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINPROGRESS)
                {
                    throw Failure(errno);
                }

                await WaitUntilWritableAsync(descriptor, cancellationToken).ConfigureAwait(false);
                int error = 0;
                int length = sizeof(int);
                if (GetSocketOption(descriptor, SolSocket, SoError, ref error, ref length) != 0)
                {
                    throw Failure(Marshal.GetLastPInvokeError());
                }

                if (error != 0)
                {
                    throw Failure(error);
                }
            }

            // Blocking again, as every socket the runtime makes starts out: the connection's stream may be read
            // synchronously, and the runtime takes a socket it is given to be blocking. The native transport sets
            // it non-blocking again when it takes the socket over.
            int flags = Fcntl(descriptor, FcntlGetFlags, 0);
            if (flags < 0 || Fcntl(descriptor, FcntlSetFlags, flags & ~ONonBlock) != 0)
            {
                throw Failure(Marshal.GetLastPInvokeError());
            }

            return new Socket(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    private static async ValueTask WaitUntilWritableAsync(int descriptor, CancellationToken cancellationToken)
    {
        var wait = new Wait();
        EventLoop loop = EventLoop.Next();
        long registration = loop.Register(wait, descriptor);
        try
        {
            await wait.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // Before the descriptor is closed or handed on: the transport registers it again under its own number.
            loop.Unregister(registration, descriptor);
        }
    }

    private static SocketException Failure(int errno) => new((int)ToSocketError(errno), Marshal.GetPInvokeErrorMessage(errno));

    // Ends at the first event: writable once connected, error or hang-up once refused or failed. The connect's
    // continuation (making the Socket, then whatever the caller does until its first wait) runs on the loop's
    // thread, as a waiting read's does: handing it to the thread pool cost a thread wake-up, tens of microseconds
    // on a busy virtual machine, on every short-lived connection.
    private sealed class Wait : TaskCompletionSource, EventLoop.ITarget
    {
        public void OnEvents(uint events)
        {
            if ((events & (EpollOut | EpollErr | EpollHup)) != 0)
            {
                TrySetResult();
            }
        }
    }
}
