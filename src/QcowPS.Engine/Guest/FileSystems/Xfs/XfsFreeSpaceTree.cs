using System;
using System.Collections.Generic;
using static System.Buffers.Binary.BinaryPrimitives;
using B = QcowPS.Engine.Guest.FileSystems.Xfs.XfsBtreeLayout;

namespace QcowPS.Engine.Guest.FileSystems.Xfs
{
    /// <summary>
    /// Reads one free-space B+tree of one AG (by block number, bnobt, or by size, cntbt) level by level,
    /// checking every block before using it: magic, level, record count, sibling links and, on v5, CRC,
    /// address, UUID and owning AG. A block reached twice (a cycle or a shared subtree) or a pointer
    /// outside the AG ends the walk, so a hostile tree costs at most one read per block of the AG.
    /// </summary>
    internal sealed class XfsFreeSpaceTree
    {
        /// <summary>Reads one block of the AG by its AG block number.</summary>
        public delegate byte[] BlockReader(uint agBlock);

        private readonly BlockReader _read;
        private readonly int _blockSize;
        private readonly bool _v5;
        private readonly uint _ag;
        private readonly uint _agLength;
        private readonly long _agFirstSector;
        private readonly byte[] _uuid;
        private readonly Func<string, Exception> _corrupt;

        public XfsFreeSpaceTree(BlockReader read, int blockSize, bool v5, uint ag, uint agLength, long agFirstSector, byte[] uuid, Func<string, Exception> corrupt)
        {
            _read = read;
            _blockSize = blockSize;
            _v5 = v5;
            _ag = ag;
            _agLength = agLength;
            _agFirstSector = agFirstSector;
            _uuid = uuid;
            _corrupt = corrupt;
        }

        /// <summary>The leaf records (AG block, block count) of the tree at root with the given number of levels, in tree order.</summary>
        public List<(uint start, uint count)> Records(string name, uint magic, uint root, uint levels)
        {
            if (levels < 1 || levels > XfsAgfLayout.MaxLevels) throw _corrupt($"AG {_ag}'s {name} claims {levels} levels");
            var records = new List<(uint, uint)>();
            var visited = new HashSet<uint>();
            var next = new List<uint>();
            Visit(root);
            for (int level = (int)levels - 1; level >= 0; level--)
            {
                var current = next;
                next = new List<uint>();
                for (int i = 0; i < current.Count; i++)
                {
                    uint at = current[i];
                    var block = _read(at);
                    Check(block, name, magic, at, level);
                    uint left = U32(block, B.LeftSibling), right = U32(block, B.RightSibling);
                    uint wantLeft = i == 0 ? B.NullBlock : current[i - 1], wantRight = i == current.Count - 1 ? B.NullBlock : current[i + 1];
                    if (left != wantLeft || right != wantRight)
                        throw _corrupt($"AG {_ag}'s {name} block {at} has siblings {left}/{right}, expected {wantLeft}/{wantRight}");
                    int count = U16(block, B.NumRecs);
                    int max = B.MaxRecords(_blockSize, _v5, level == 0);
                    if (count > max) throw _corrupt($"AG {_ag}'s {name} block {at} claims {count} records; at most {max} fit");
                    if (count == 0 && !(level == 0 && levels == 1)) throw _corrupt($"AG {_ag}'s {name} block {at} is empty");
                    for (int r = 0; r < count; r++)
                    {
                        if (level == 0)
                            records.Add((U32(block, B.RecordOffset(_v5, r) + B.RecordStartBlock), U32(block, B.RecordOffset(_v5, r) + B.RecordBlockCount)));
                        else
                            Visit(U32(block, B.PointerOffset(_blockSize, _v5, r)));
                    }
                }
            }
            return records;

            // Every pointer is checked when it is read, before any block it names is: inside the AG, and new.
            void Visit(uint at)
            {
                if (at == 0 || at >= _agLength) throw _corrupt($"AG {_ag}'s {name} points to block {at}, outside the AG of {_agLength} blocks");
                if (!visited.Add(at)) throw _corrupt($"AG {_ag}'s {name} reaches block {at} twice (a cycle or shared subtree)");
                next.Add(at);
            }
        }

        private void Check(byte[] block, string name, uint magic, uint at, int level)
        {
            uint found = U32(block, B.MagicField);
            if (found != magic) throw _corrupt($"AG {_ag}'s {name} block {at} has magic {found:x8}, not {magic:x8}");
            if (_v5)
            {
                uint stored = ReadUInt32LittleEndian(new ReadOnlySpan<byte>(block, B.Crc, 4));
                if (Crc32.Castagnoli.Compute(block, 0, _blockSize, B.Crc) != stored) throw _corrupt($"AG {_ag}'s {name} block {at} fails its CRC check");
                long sector = _agFirstSector + (long)at * (_blockSize / 512);
                if ((long)ReadUInt64BigEndian(new ReadOnlySpan<byte>(block, B.BlockNumber, 8)) != sector)
                    throw _corrupt($"AG {_ag}'s {name} block {at} says it is somewhere else");
                for (int i = 0; i < 16; i++)
                    if (block[B.Uuid + i] != _uuid[i]) throw _corrupt($"AG {_ag}'s {name} block {at} belongs to another file system (UUID differs)");
                if (U32(block, B.Owner) != _ag) throw _corrupt($"AG {_ag}'s {name} block {at} says it belongs to AG {U32(block, B.Owner)}");
            }
            int blockLevel = U16(block, B.Level);
            if (blockLevel != level) throw _corrupt($"AG {_ag}'s {name} block {at} is at level {blockLevel}, expected {level}");
        }

        private static uint U32(byte[] b, int o) => ReadUInt32BigEndian(new ReadOnlySpan<byte>(b, o, 4));
        private static ushort U16(byte[] b, int o) => ReadUInt16BigEndian(new ReadOnlySpan<byte>(b, o, 2));
    }
}
