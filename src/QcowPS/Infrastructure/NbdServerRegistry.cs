using System.Collections.Generic;
using System.Linq;
using System.Threading;
using QcowPS.Engine.Nbd;

namespace QcowPS.Infrastructure
{
    /// <summary>The NBD servers this process started, by Id, for Get-/Stop-QcowNbdServer.</summary>
    internal static class NbdServerRegistry
    {
        private static readonly List<QcowNbdServer> s_servers = new List<QcowNbdServer>();
        private static int s_nextId;

        public static QcowNbdServer Add(NbdServer server)
        {
            var entry = new QcowNbdServer(Interlocked.Increment(ref s_nextId), server);
            lock (s_servers) s_servers.Add(entry);
            return entry;
        }

        public static QcowNbdServer[] All()
        {
            lock (s_servers) return s_servers.ToArray();
        }

        public static QcowNbdServer Find(int id)
        {
            lock (s_servers) return s_servers.FirstOrDefault(s => s.Id == id);
        }

        public static void Remove(QcowNbdServer server)
        {
            lock (s_servers) s_servers.Remove(server);
        }
    }
}
