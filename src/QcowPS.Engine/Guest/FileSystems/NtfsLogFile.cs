using System;
using System.Text;
using static System.Buffers.Binary.BinaryPrimitives;

namespace QcowPS.Engine.Guest.FileSystems
{
    /// <summary>
    /// Whether an NTFS journal ($LogFile) says the volume was shut down cleanly, by the rules of
    /// ntfs-3g (libntfs-3g/logfile.c: ntfs_check_logfile, then ntfs_is_logfile_clean): a log whose
    /// candidate restart-page positions all hold the "empty" magic (0xFFFFFFFF) is clean; otherwise the
    /// more recent of the two restart pages (RSTR, or CHKD after chkdsk) must be consistent, and when a
    /// log client is in use its restart area must carry RESTART_VOLUME_IS_CLEAN. Anything else is a
    /// reason to leave the volume alone: a log that needs replaying describes writes the bitmap may
    /// not show yet.
    /// </summary>
    internal static class NtfsLogFile
    {
        /// <summary>ntfs-3g's NTFS_BLOCK_SIZE: restart pages are probed 512 bytes at a time.</summary>
        internal const int BlockSize = 512;
        internal const int DefaultLogPageSize = 4096;
        internal const int MinLogRecordPages = 48;
        internal const long MaxLogFileSize = 0x100000000L;

        internal const uint EmptyMagic = 0xFFFFFFFF;
        internal const string RestartMagic = "RSTR";
        internal const string ChkdskMagic = "CHKD";
        internal const string RecordPageMagic = "RCRD";

        // RESTART_PAGE_HEADER
        internal const int UsaOffsetField = 4;
        internal const int UsaCountField = 6;
        internal const int ChkdskLsnField = 8;
        internal const int SystemPageSizeField = 16;
        internal const int LogPageSizeField = 20;
        internal const int RestartAreaOffsetField = 24;
        internal const int MinorVersionField = 26;
        internal const int MajorVersionField = 28;
        internal const int RestartPageHeaderSize = 30;

        // RESTART_AREA (offsets inside the restart area)
        internal const int CurrentLsnField = 0;
        internal const int LogClientsField = 8;
        internal const int ClientFreeListField = 10;
        internal const int ClientInUseListField = 12;
        internal const int RestartFlagsField = 14;
        internal const int SeqNumberBitsField = 16;
        internal const int RestartAreaLengthField = 20;
        internal const int ClientArrayOffsetField = 22;
        internal const int FileSizeField = 24;
        internal const int LogRecordHeaderLengthField = 36;
        internal const int LogPageDataOffsetField = 38;
        internal const ushort RestartVolumeIsClean = 0x0002;
        internal const ushort NoClient = 0xFFFF;

        // LOG_CLIENT_RECORD
        internal const int ClientRecordSize = 160;
        internal const int PrevClientField = 16;
        internal const int NextClientField = 18;

        /// <summary>
        /// Null when the journal is clean, else why not. read(pos, count) returns count bytes of the
        /// $LogFile data at pos (pos + count never exceeds dataSize).
        /// </summary>
        internal static string Problem(Func<long, int, byte[]> read, long dataSize)
        {
            long size = Math.Min(dataSize, MaxLogFileSize) & ~(long)(DefaultLogPageSize - 1);
            if (size < DefaultLogPageSize * 2 || (size - DefaultLogPageSize * 2) / DefaultLogPageSize < MinLogRecordPages)
                return $"its $LogFile of {dataSize} bytes is too small to be a journal";
            bool empty = true;
            byte[] first = null, second = null;
            long firstLsn = 0, secondLsn = 0;
            // The probe positions of ntfs-3g: 0, then 512, 1024, 2048, ... (a restart page is at 0 and at the system page size).
            for (long pos = 0; pos < size; pos = pos == 0 ? BlockSize : pos << 1)
            {
                var block = read(pos, BlockSize);
                uint magic = ReadUInt32LittleEndian(block);
                if (magic != EmptyMagic) empty = false;
                else if (!empty) break;
                string text = Encoding.ASCII.GetString(block, 0, 4);
                if (text == RecordPageMagic) break;
                if (text != RestartMagic && text != ChkdskMagic) continue;
                var page = LoadRestartPage(read, block, pos, size, out long lsn);
                if (page == null) continue;  // an inconsistent restart page: ntfs-3g looks on for a valid one
                if (first == null) { first = page; firstLsn = lsn; continue; }
                second = page; secondLsn = lsn;
                break;
            }
            if (empty) return null;
            if (first == null) return "its $LogFile is not empty and holds no valid restart page: the journal cannot be trusted";
            var current = second != null && secondLsn > firstLsn ? second : first;
            int ra = U16(current, RestartAreaOffsetField);
            ushort inUse = U16(current, ra + ClientInUseListField), flags = U16(current, ra + RestartFlagsField);
            if (inUse != NoClient && (flags & RestartVolumeIsClean) == 0)
                return "its $LogFile says the volume was not shut down cleanly (the journal needs replaying): let Windows or ntfsfix mount it first";
            return null;
        }

        /// <summary>The whole restart page with its update sequence applied, or null when it is inconsistent (ntfs_check_and_load_restart_page).</summary>
        private static byte[] LoadRestartPage(Func<long, int, byte[]> read, byte[] block, long pos, long size, out long lsn)
        {
            lsn = 0;
            bool chkdsk = Encoding.ASCII.GetString(block, 0, 4) == ChkdskMagic;
            uint systemPage = U32(block, SystemPageSizeField), logPage = U32(block, LogPageSizeField);
            if (systemPage < BlockSize || logPage < BlockSize || (systemPage & (systemPage - 1)) != 0 || (logPage & (logPage - 1)) != 0) return null;
            if (systemPage > 65536 || pos + systemPage > size) return null;
            if (pos != 0 && pos != systemPage) return null;
            short major = (short)U16(block, MajorVersionField), minor = (short)U16(block, MinorVersionField);
            if (!(major == 1 && minor == 1) && !(major == 2 && minor == 0)) return null;
            int usaCount = U16(block, UsaCountField), usaOffset = U16(block, UsaOffsetField);
            bool hasUsa = !(chkdsk && usaCount == 0);
            int usaEnd = 0;
            if (hasUsa)
            {
                if (usaCount != 1 + systemPage / BlockSize) return null;
                usaEnd = usaOffset + usaCount * 2;
                if (usaOffset < RestartPageHeaderSize || usaEnd > BlockSize - 2) return null;
            }
            int ra = U16(block, RestartAreaOffsetField);
            if ((ra & 7) != 0 || ra < (hasUsa ? usaEnd : RestartPageHeaderSize) || ra > systemPage) return null;
            if (!chkdsk && ReadInt64LittleEndian(new ReadOnlySpan<byte>(block, ChkdskLsnField, 8)) != 0) return null;

            // The restart area (ntfs_check_restart_area): everything it needs lies in the first block, before the first protected word.
            if (ra + FileSizeField > BlockSize - 2) return null;
            int clientArray = U16(block, ra + ClientArrayOffsetField);
            if (((clientArray + 7) & ~7) != clientArray || ra + clientArray > BlockSize - 2) return null;
            int clients = U16(block, ra + LogClientsField);
            int areaLength = U16(block, ra + RestartAreaLengthField);
            long computedLength = clientArray + (long)clients * ClientRecordSize;
            if (ra + computedLength > systemPage || ra + areaLength > systemPage || computedLength > areaLength) return null;
            ushort free = U16(block, ra + ClientFreeListField), inUse = U16(block, ra + ClientInUseListField);
            if ((free != NoClient && free >= clients) || (inUse != NoClient && inUse >= clients)) return null;
            ulong fileSize = (ulong)ReadInt64LittleEndian(new ReadOnlySpan<byte>(block, ra + FileSizeField, 8));
            int bits = 0;
            while (fileSize != 0) { fileSize >>= 1; bits++; }
            if (U32(block, ra + SeqNumberBitsField) != (uint)(67 - bits)) return null;
            if ((U16(block, ra + LogRecordHeaderLengthField) & 7) != 0 || (U16(block, ra + LogPageDataOffsetField) & 7) != 0) return null;

            var page = systemPage <= BlockSize ? (byte[])block.Clone() : read(pos, (int)systemPage);
            if (hasUsa && !ApplyFixups(page, usaOffset, usaCount) && ra + areaLength > BlockSize - 2) return null;
            if (!chkdsk && inUse != NoClient && !ClientListsConsistent(page, ra)) return null;
            lsn = chkdsk ? ReadInt64LittleEndian(new ReadOnlySpan<byte>(page, ChkdskLsnField, 8))
                         : ReadInt64LittleEndian(new ReadOnlySpan<byte>(page, ra + CurrentLsnField, 8));
            return page;
        }

        /// <summary>Both client lists stay inside the array, start without a previous client, and visit no more records than there are (no loop).</summary>
        private static bool ClientListsConsistent(byte[] page, int ra)
        {
            int clients = U16(page, ra + LogClientsField);
            int array = ra + U16(page, ra + ClientArrayOffsetField);
            foreach (int listField in new[] { ClientFreeListField, ClientInUseListField })
            {
                int budget = clients;
                bool firstOfList = true;
                for (int index = U16(page, ra + listField); index != NoClient; budget--)
                {
                    if (budget == 0 || index >= clients) return false;
                    int record = array + index * ClientRecordSize;
                    if (record + ClientRecordSize > page.Length) return false;
                    if (firstOfList && U16(page, record + PrevClientField) != NoClient) return false;
                    firstOfList = false;
                    index = U16(page, record + NextClientField);
                }
            }
            return true;
        }

        /// <summary>Applies an update sequence array in place (512-byte strides); false when a stride's tail does not match (a torn write).</summary>
        internal static bool ApplyFixups(byte[] r, int usaOffset, int usaCount)
        {
            if (usaCount < 1 || usaOffset + 2 * usaCount > r.Length || (usaCount - 1) * BlockSize > r.Length) return false;
            bool intact = true;
            for (int i = 1; i < usaCount; i++)
            {
                int tail = i * BlockSize - 2;
                if (r[tail] != r[usaOffset] || r[tail + 1] != r[usaOffset + 1]) { intact = false; continue; }
                r[tail] = r[usaOffset + 2 * i];
                r[tail + 1] = r[usaOffset + 2 * i + 1];
            }
            return intact;
        }

        private static ushort U16(byte[] b, int o) => ReadUInt16LittleEndian(new ReadOnlySpan<byte>(b, o, 2));
        private static uint U32(byte[] b, int o) => ReadUInt32LittleEndian(new ReadOnlySpan<byte>(b, o, 4));
    }
}
