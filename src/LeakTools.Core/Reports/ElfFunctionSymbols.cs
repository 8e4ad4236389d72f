using System.Buffers.Binary;

namespace LeakTools.Core.Reports;

/// <summary>The function symbols (.symtab and .dynsym: name, value, size) of a 64-bit
/// little-endian ELF file: just enough to place a valgrind frame's named function in its file and
/// so learn where valgrind had loaded the object. A file that is missing, not ELF64 or damaged
/// gives no symbols, never an exception.</summary>
internal static class ElfFunctionSymbols
{
    private const int SHT_SYMTAB = 2, SHT_DYNSYM = 11, STT_FUNC = 2, STT_GNU_IFUNC = 10;

    public static Dictionary<string, (ulong Value, ulong Size)> Read(string path)
    {
        var result = new Dictionary<string, (ulong, ulong)>(StringComparer.Ordinal);
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            byte[] h = ReadAt(f, 0, 64);
            if (h.Length < 64 || h[0] != 0x7f || h[1] != 'E' || h[2] != 'L' || h[3] != 'F' || h[4] != 2 || h[5] != 1) return result;
            ulong shoff = BinaryPrimitives.ReadUInt64LittleEndian(h.AsSpan(0x28));
            int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(0x3A));
            int shnum = BinaryPrimitives.ReadUInt16LittleEndian(h.AsSpan(0x3C));
            if (shoff == 0 || shentsize < 64 || shnum == 0 || (long)shoff + (long)shentsize * shnum > f.Length) return result;
            byte[] sections = ReadAt(f, (long)shoff, shentsize * shnum);
            for (int i = 0; i < shnum; i++)
            {
                var sh = sections.AsSpan(i * shentsize, 64);
                uint type = BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]);
                if (type is not (SHT_SYMTAB or SHT_DYNSYM)) continue;
                ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(sh[24..]), size = BinaryPrimitives.ReadUInt64LittleEndian(sh[32..]);
                uint link = BinaryPrimitives.ReadUInt32LittleEndian(sh[40..]);
                ulong entsize = BinaryPrimitives.ReadUInt64LittleEndian(sh[56..]);
                if (entsize < 24 || link >= shnum || offset + size > (ulong)f.Length) continue;
                var strSh = sections.AsSpan((int)link * shentsize, 64);
                ulong strOffset = BinaryPrimitives.ReadUInt64LittleEndian(strSh[24..]), strSize = BinaryPrimitives.ReadUInt64LittleEndian(strSh[32..]);
                if (strOffset + strSize > (ulong)f.Length || size > int.MaxValue || strSize > int.MaxValue) continue;
                byte[] symbols = ReadAt(f, (long)offset, (int)size);
                byte[] strings = ReadAt(f, (long)strOffset, (int)strSize);
                for (int at = 0; at + 24 <= symbols.Length; at += (int)entsize)
                {
                    var sym = symbols.AsSpan(at, 24);
                    int kind = sym[4] & 0xf;
                    ulong value = BinaryPrimitives.ReadUInt64LittleEndian(sym[8..]), symSize = BinaryPrimitives.ReadUInt64LittleEndian(sym[16..]);
                    if (kind is not (STT_FUNC or STT_GNU_IFUNC) || value == 0 || symSize == 0) continue;
                    uint name = BinaryPrimitives.ReadUInt32LittleEndian(sym);
                    if (name >= strings.Length) continue;
                    int end = Array.IndexOf(strings, (byte)0, (int)name);
                    if (end < 0) continue;
                    string text = System.Text.Encoding.UTF8.GetString(strings, (int)name, end - (int)name);
                    int version = text.IndexOf('@');
                    if (version > 0) text = text[..version];
                    result.TryAdd(text, (value, symSize));
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
        }
        return result;
    }

    private static byte[] ReadAt(FileStream f, long offset, int count)
    {
        var buffer = new byte[count];
        f.Position = offset;
        int n = f.ReadAtLeast(buffer, count, throwOnEndOfStream: false);
        return n == count ? buffer : buffer[..n];
    }
}
