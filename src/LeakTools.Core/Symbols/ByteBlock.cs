using System.Runtime.CompilerServices;
using System.Text;

namespace LeakTools.Core.Symbols;

/// <summary>Raised by the ELF/DWARF readers on bytes that do not follow the format (truncated,
/// out-of-range offsets, impossible sizes). Internal: the public API turns it into a
/// <see cref="LeakToolsException"/> for a whole file, or into a frame without line for one unit.</summary>
internal sealed class BadFormatException(string message) : Exception(message);

/// <summary>A run of bytes that outlives a call: a managed array (decompressed sections, images
/// read from memory) or a slice of a read-only file mapping kept open by its <see cref="ElfFile"/>.</summary>
internal readonly unsafe struct ByteBlock
{
    private readonly byte[]? _array;
    private readonly byte* _pointer;

    public ByteBlock(byte[] array)
    {
        _array = array;
        _pointer = null;
        Length = array.Length;
    }

    public ByteBlock(byte* pointer, int length, bool owned = false)
    {
        _array = null;
        _pointer = pointer;
        Length = length;
        _owned = owned;
    }

    private readonly bool _owned;

    /// <summary>A block of native memory owned by whoever keeps it; release with <see cref="Free"/>.</summary>
    public static ByteBlock AllocateNative(int length)
    {
        Interlocked.Add(ref s_nativeBytes, length);
        return new((byte*)System.Runtime.InteropServices.NativeMemory.Alloc((nuint)Math.Max(1, length)), length, owned: true);
    }

    private static long s_nativeBytes;

    /// <summary>Bytes of native memory held by decompressed sections right now.</summary>
    public static long NativeBytesInUse => Interlocked.Read(ref s_nativeBytes);

    /// <summary>Writable view of a native block being filled.</summary>
    public Span<byte> WritableSpan => _owned ? new Span<byte>(_pointer, Length) : throw new InvalidOperationException("not an owned native block");

    /// <summary>Frees native memory this block owns (no-op for arrays and file mappings).</summary>
    public void Free()
    {
        if (_owned && _pointer != null)
        {
            System.Runtime.InteropServices.NativeMemory.Free(_pointer);
            Interlocked.Add(ref s_nativeBytes, -Length);
        }
    }

    public static ByteBlock Empty => new(Array.Empty<byte>());

    public int Length { get; }

    public bool IsEmpty => Length == 0;

    public ReadOnlySpan<byte> Span => _array is not null ? _array : new ReadOnlySpan<byte>(_pointer, Length);
}

/// <summary>A bounds-checked little-endian reader over a span: every read past the end throws
/// <see cref="BadFormatException"/>, so corrupt input can never read outside its section.</summary>
internal ref struct SpanReader
{
    private readonly ReadOnlySpan<byte> _data;

    public SpanReader(ReadOnlySpan<byte> data, int position = 0)
    {
        _data = data;
        if ((uint)position > (uint)data.Length) throw new BadFormatException($"offset 0x{position:x} is outside a section of 0x{data.Length:x} bytes");
        Position = position;
    }

    public int Position;

    public readonly int Length => _data.Length;

    public readonly int Remaining => _data.Length - Position;

    public readonly bool AtEnd => Position >= _data.Length;

    public readonly ReadOnlySpan<byte> Data => _data;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Need(int count)
    {
        if ((uint)count > (uint)(_data.Length - Position)) Throw(count);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private readonly void Throw(int count) =>
        throw new BadFormatException($"truncated data: {count} byte(s) needed at offset 0x{Position:x} of 0x{_data.Length:x}");

    public void Seek(long position)
    {
        if ((ulong)position > (ulong)_data.Length) throw new BadFormatException($"offset 0x{position:x} is outside a section of 0x{_data.Length:x} bytes");
        Position = (int)position;
    }

    public void Skip(ulong count)
    {
        if (count > (ulong)(_data.Length - Position)) Throw(count > int.MaxValue ? int.MaxValue : (int)count);
        Position += (int)count;
    }

    public byte U8()
    {
        Need(1);
        return _data[Position++];
    }

    public sbyte S8() => (sbyte)U8();

    public ushort U16()
    {
        Need(2);
        ushort v = Unsafe.ReadUnaligned<ushort>(ref Unsafe.AsRef(in _data[Position]));
        Position += 2;
        return v;
    }

    public uint U24()
    {
        Need(3);
        uint v = (uint)(_data[Position] | _data[Position + 1] << 8 | _data[Position + 2] << 16);
        Position += 3;
        return v;
    }

    public uint U32()
    {
        Need(4);
        uint v = Unsafe.ReadUnaligned<uint>(ref Unsafe.AsRef(in _data[Position]));
        Position += 4;
        return v;
    }

    public ulong U64()
    {
        Need(8);
        ulong v = Unsafe.ReadUnaligned<ulong>(ref Unsafe.AsRef(in _data[Position]));
        Position += 8;
        return v;
    }

    /// <summary>A DWARF initial length: 4 bytes, or 0xffffffff and 8 bytes for 64-bit DWARF.
    /// Reserved values (0xfffffff0-0xfffffffe) are corrupt.</summary>
    public (ulong Length, bool Is64) InitialLength()
    {
        ulong length = U32();
        if (length == 0xffffffff) return (U64(), true);
        if (length >= 0xfffffff0) throw new BadFormatException($"reserved unit length 0x{length:x}");
        return (length, false);
    }

    /// <summary>An unsigned value of 1, 2, 4 or 8 bytes (address sizes, offsets).</summary>
    public ulong Sized(int size) => size switch
    {
        8 => U64(),
        4 => U32(),
        2 => U16(),
        1 => U8(),
        _ => throw new BadFormatException($"unsupported value size {size}"),
    };

    /// <summary>A 4-byte offset, or 8 bytes in 64-bit DWARF.</summary>
    public ulong Offset(bool is64) => is64 ? U64() : U32();

    public ulong ULeb()
    {
        ulong result = 0;
        int shift = 0;
        while (true)
        {
            byte b = U8();
            if (shift < 64) result |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return result;
            shift += 7;
            if (shift > 70) throw new BadFormatException("LEB128 value longer than 10 bytes");
        }
    }

    public long SLeb()
    {
        long result = 0;
        int shift = 0;
        byte b;
        do
        {
            b = U8();
            if (shift < 64) result |= (long)(b & 0x7f) << shift;
            shift += 7;
            if (shift > 70) throw new BadFormatException("LEB128 value longer than 10 bytes");
        }
        while ((b & 0x80) != 0);
        if (shift < 64 && (b & 0x40) != 0) result |= -1L << shift;
        return result;
    }

    /// <summary>A NUL-terminated string's bytes (without the NUL); the position moves past it.</summary>
    public ReadOnlySpan<byte> CString()
    {
        ReadOnlySpan<byte> rest = _data[Position..];
        int n = rest.IndexOf((byte)0);
        if (n < 0) throw new BadFormatException($"unterminated string at offset 0x{Position:x}");
        Position += n + 1;
        return rest[..n];
    }

    public ReadOnlySpan<byte> Bytes(int count)
    {
        Need(count);
        ReadOnlySpan<byte> s = _data.Slice(Position, count);
        Position += count;
        return s;
    }

    /// <summary>The NUL-terminated string at <paramref name="offset"/> of a string section.</summary>
    public static string StringAt(ReadOnlySpan<byte> section, ulong offset)
    {
        if (offset >= (ulong)section.Length) throw new BadFormatException($"string offset 0x{offset:x} is outside a string table of 0x{section.Length:x} bytes");
        ReadOnlySpan<byte> rest = section[(int)offset..];
        int n = rest.IndexOf((byte)0);
        if (n < 0) n = rest.Length;
        return Encoding.UTF8.GetString(rest[..n]);
    }
}
