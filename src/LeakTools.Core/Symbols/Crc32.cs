namespace LeakTools.Core.Symbols;

/// <summary>The CRC-32 (IEEE 802.3, as zlib's crc32) that .gnu_debuglink stores for its debug file.</summary>
public static class Crc32
{
    private static readonly uint[] s_table = BuildTable();

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return table;
    }

    public static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        crc = ~crc;
        foreach (byte b in data) crc = s_table[(crc ^ b) & 0xff] ^ (crc >> 8);
        return ~crc;
    }

    /// <summary>CRC-32 of a whole file.</summary>
    public static uint OfFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete, 1 << 16);
        var buffer = new byte[1 << 16];
        uint crc = 0;
        int n;
        while ((n = stream.Read(buffer, 0, buffer.Length)) > 0) crc = Append(crc, buffer.AsSpan(0, n));
        return crc;
    }
}
