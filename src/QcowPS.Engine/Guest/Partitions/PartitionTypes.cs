using System;
using System.Collections.Generic;

namespace QcowPS.Engine.Guest.Partitions
{
    /// <summary>Friendly names of partition types, as fdisk/sfdisk name them.</summary>
    public static class PartitionTypes
    {
        public static readonly Guid EfiSystem = new Guid("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
        public static readonly Guid LinuxFilesystem = new Guid("0FC63DAF-8483-4772-8E79-3D69D8477DE4");
        public static readonly Guid LinuxSwap = new Guid("0657FD6D-A4AB-43C4-84E5-0933C84B4F4F");
        public static readonly Guid LinuxLvm = new Guid("E6D6D379-F507-44C2-A23C-238F2A3DF928");
        public static readonly Guid MicrosoftBasicData = new Guid("EBD0A0A2-B9E5-4433-87C0-68B6B72699C7");
        public static readonly Guid MicrosoftReserved = new Guid("E3C9E316-0B5C-4DB8-817D-F92DF00215AE");
        public static readonly Guid WindowsRecovery = new Guid("DE94BBA4-06D1-4D40-A16A-BFD50179D6AC");
        public static readonly Guid BiosBoot = new Guid("21686148-6449-6E6F-744E-656564454649");

        /// <summary>The MBR type of a GPT protective partition.</summary>
        public const byte GptProtective = 0xEE;

        private static readonly Dictionary<Guid, string> GptNames = new Dictionary<Guid, string>
        {
            [EfiSystem] = "EFI System",
            [LinuxFilesystem] = "Linux filesystem",
            [LinuxSwap] = "Linux swap",
            [LinuxLvm] = "Linux LVM",
            [MicrosoftBasicData] = "Microsoft basic data",
            [MicrosoftReserved] = "Microsoft reserved",
            [WindowsRecovery] = "Windows recovery environment",
            [BiosBoot] = "BIOS boot",
            [new Guid("A19D880F-05FC-4D3B-A006-743F0F84911E")] = "Linux RAID",
            [new Guid("4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")] = "Linux root (x86-64)",
            [new Guid("44479540-F297-41B2-9AF7-D131D5F0458A")] = "Linux root (x86)",
            [new Guid("B921B045-1DF0-41C3-AF44-4C6F280D3FAE")] = "Linux root (ARM-64)",
            [new Guid("BC13C2FF-59E6-4262-A352-B275FD6F7172")] = "Linux extended boot",
            [new Guid("933AC7E1-2EB4-4F13-B844-0E14E2AEF915")] = "Linux home",
            [new Guid("CA7D7CCB-63ED-4C53-861C-1742536059CC")] = "Linux LUKS",
            [new Guid("5808C8AA-7E8F-42E0-85D2-E1E90434CFB3")] = "Microsoft LDM metadata",
            [new Guid("AF9B60A0-1431-4F62-BC68-3311714A69AD")] = "Microsoft LDM data",
            [new Guid("48465300-0000-11AA-AA11-00306543ECAC")] = "Apple HFS/HFS+",
            [new Guid("7C3457EF-0000-11AA-AA11-00306543ECAC")] = "Apple APFS",
            [new Guid("516E7CB6-6ECF-11D6-8FF8-00022D09712B")] = "FreeBSD UFS",
        };

        private static readonly Dictionary<byte, string> MbrNames = new Dictionary<byte, string>
        {
            [0x01] = "FAT12",
            [0x04] = "FAT16 <32M",
            [0x05] = "Extended",
            [0x06] = "FAT16",
            [0x07] = "HPFS/NTFS/exFAT",
            [0x0B] = "W95 FAT32",
            [0x0C] = "W95 FAT32 (LBA)",
            [0x0E] = "W95 FAT16 (LBA)",
            [0x0F] = "W95 Ext'd (LBA)",
            [0x27] = "Hidden NTFS WinRE",
            [0x82] = "Linux swap / Solaris",
            [0x83] = "Linux",
            [0x85] = "Linux extended",
            [0x8E] = "Linux LVM",
            [0xA5] = "FreeBSD",
            [0xEE] = "GPT",
            [0xEF] = "EFI (FAT-12/16/32)",
            [0xFD] = "Linux raid autodetect",
        };

        public static string NameOf(Guid type) => GptNames.TryGetValue(type, out var n) ? n : type.ToString().ToUpperInvariant();

        public static string NameOf(byte type) => MbrNames.TryGetValue(type, out var n) ? n : $"Unknown ({type:x2})";

        /// <summary>MBR types that hold a chain of extended boot records.</summary>
        public static bool IsExtended(byte type) => type == 0x05 || type == 0x0F || type == 0x85;

        /// <summary>A GPT type given as a GUID string or a friendly name (case-insensitive), or null.</summary>
        public static Guid? GptTypeFrom(string text)
        {
            if (Guid.TryParse(text, out var g)) return g;
            foreach (var kv in GptNames)
                if (string.Equals(kv.Value, text, StringComparison.OrdinalIgnoreCase)) return kv.Key;
            return null;
        }

        /// <summary>An MBR type given as hex (83, 0x83) or a friendly name, or null.</summary>
        public static byte? MbrTypeFrom(string text)
        {
            string hex = text.StartsWith("0x", StringComparison.OrdinalIgnoreCase) ? text.Substring(2) : text;
            if (hex.Length <= 2 && byte.TryParse(hex, System.Globalization.NumberStyles.HexNumber, null, out var b)) return b;
            foreach (var kv in MbrNames)
                if (string.Equals(kv.Value, text, StringComparison.OrdinalIgnoreCase)) return kv.Key;
            return null;
        }
    }
}
