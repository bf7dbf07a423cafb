package SmartImaging;

# Helpers shared by the smart-imaging .t files: reading sample images,
# building "--- user_files eval" values, and parsing WebP / JPEG / PNG
# headers so tests can check dimensions and alpha without an image library.
#
# Works the same under our t/lib/Test/Nginx/Socket.pm and under CPAN's
# Test::Nginx (both are run with -I t/lib).
#
# Note: Test::Base evaluates "--- xxx eval" sections in the package
# Test::Base::Filter, so call these helpers fully qualified there, e.g.
#
#     --- response_body eval
#     SmartImaging::slurp("$ENV{TEST_NGINX_SAMPLES}/sample.jpg")

use strict;
use warnings;

use Cwd ();
use Exporter ();
use File::Basename ();
use File::Spec ();

our @ISA = ('Exporter');
our @EXPORT_OK = qw(
    slurp samples_dir sample_path have_samples sample_user_files
    webp_info png_info jpeg_info image_info nginx_binary_available
);

# Repository root: t/lib/SmartImaging.pm -> ../../
my $RepoRoot = do {
    my $d = File::Spec->rel2abs(File::Spec->catdir(
        File::Basename::dirname(__FILE__), File::Spec->updir,
        File::Spec->updir));
    Cwd::abs_path($d) || $d;
};

# Default the samples directory so $TEST_NGINX_SAMPLES also works in config
# sections.
$ENV{TEST_NGINX_SAMPLES} ||= File::Spec->catdir($RepoRoot, 'samples');

sub samples_dir { $ENV{TEST_NGINX_SAMPLES} }

sub sample_path {
    my $name = shift;
    return File::Spec->catfile(samples_dir(), $name);
}

# True when every named sample exists (for "plan skip_all" guards).
sub have_samples {
    for my $n (@_) {
        return 0 unless -f sample_path($n);
    }
    return 1;
}

# Whole file, binary-safe.  Dies if it cannot be read.
sub slurp {
    my $path = shift;
    open my $in, '<:raw', $path or die "cannot open $path: $!\n";
    local $/;
    my $data = <$in>;
    close $in;
    return defined $data ? $data : '';
}

# [[name, bytes], ...] for "--- user_files eval".  Each argument is a sample
# name, or "dest=sample" to store a sample under another name.
sub sample_user_files {
    my @files;
    for my $spec (@_) {
        my ($dest, $src) = $spec =~ /^([^=]+)=(.+)$/ ? ($1, $2)
                                                     : ($spec, $spec);
        push @files, [$dest, slurp(sample_path($src))];
    }
    return \@files;
}

# Whether an nginx binary can be found (TEST_NGINX_BINARY or PATH).
sub nginx_binary_available {
    my $bin = $ENV{TEST_NGINX_BINARY} || 'nginx';
    return -x $bin ? 1 : 0 if $bin =~ m{/};
    for my $dir (split /:/, ($ENV{PATH} || '')) {
        return 1 if -f "$dir/$bin" && -x _;
    }
    return 0;
}

# ---------------------------------------------------------------------------
# Image header parsing
# ---------------------------------------------------------------------------

# Parse a WebP file.  Returns undef unless $bytes is a RIFF/WEBP file, else a
# hash ref:
#   format     'lossy' (VP8), 'lossless' (VP8L) or 'unknown'
#   extended   1 for a VP8X file
#   width, height
#   alpha      1 if the image carries alpha (VP8X flag / ALPH chunk / VP8L
#              alpha hint)
#   animated   1 for an animated file (VP8X flag)
#   riff_size  the RIFF size field; size_ok is 1 when riff_size + 8 equals
#              the number of bytes
#   chunks     [fourcc, ...] of the top-level chunks
sub webp_info {
    my $b = shift;
    return undef unless defined $b && length $b >= 20;
    return undef unless substr($b, 0, 4) eq 'RIFF'
                     && substr($b, 8, 4) eq 'WEBP';

    my %info = (
        riff_size => unpack('V', substr($b, 4, 4)),
        format    => 'unknown',
        extended  => 0,
        alpha     => 0,
        animated  => 0,
        chunks    => [],
    );
    $info{size_ok} = $info{riff_size} + 8 == length($b) ? 1 : 0;

    my $pos = 12;
    while ($pos + 8 <= length $b) {
        my $fourcc = substr($b, $pos, 4);
        my $size = unpack('V', substr($b, $pos + 4, 4));
        my $data = substr($b, $pos + 8, $size);
        push @{ $info{chunks} }, $fourcc;

        if ($fourcc eq 'VP8X' && length $data >= 10) {
            my $flags = ord substr($data, 0, 1);
            $info{extended} = 1;
            $info{alpha}    = 1 if $flags & 0x10;
            $info{animated} = 1 if $flags & 0x02;
            my ($w0, $w1, $w2, $h0, $h1, $h2) =
                map { ord } split //, substr($data, 4, 6);
            $info{width}  = 1 + ($w0 | $w1 << 8 | $w2 << 16);
            $info{height} = 1 + ($h0 | $h1 << 8 | $h2 << 16);
        } elsif ($fourcc eq 'ALPH') {
            $info{alpha} = 1;
        } elsif ($fourcc eq 'VP8 ' && length $data >= 10) {
            $info{format} = 'lossy';
            # 3-byte frame tag, start code 9d 01 2a, then 14-bit sizes.
            if (substr($data, 3, 3) eq "\x9d\x01\x2a") {
                my ($w, $h) = unpack('vv', substr($data, 6, 4));
                $info{width}  //= $w & 0x3fff;
                $info{height} //= $h & 0x3fff;
            }
        } elsif ($fourcc eq 'VP8L' && length $data >= 5) {
            $info{format} = 'lossless';
            if (ord(substr($data, 0, 1)) == 0x2f) {
                my $bits = unpack('V', substr($data, 1, 4));
                $info{width}  //= 1 + ($bits & 0x3fff);
                $info{height} //= 1 + (($bits >> 14) & 0x3fff);
                $info{alpha} = 1 if ($bits >> 28) & 1;
            }
        }
        # Chunks are padded to an even size.
        $pos += 8 + $size + ($size & 1);
    }
    return \%info;
}

# PNG: { width, height, bit_depth, color_type, alpha } or undef.
# alpha is 1 for color types 4/6 or when a tRNS chunk is present.
sub png_info {
    my $b = shift;
    return undef unless defined $b && length $b >= 33
        && substr($b, 0, 8) eq "\x89PNG\r\n\x1a\n"
        && substr($b, 12, 4) eq 'IHDR';
    my ($w, $h, $depth, $ctype) = unpack('NNCC', substr($b, 16, 10));
    my %info = (width => $w, height => $h, bit_depth => $depth,
                color_type => $ctype, alpha => ($ctype == 4 || $ctype == 6)
                                               ? 1 : 0);
    my $pos = 8;
    while ($pos + 8 <= length $b) {
        my ($len, $type) = unpack('Na4', substr($b, $pos, 8));
        $info{alpha} = 1 if $type eq 'tRNS';
        last if $type eq 'IDAT' || $type eq 'IEND';
        $pos += 12 + $len;
    }
    return \%info;
}

# JPEG: { width, height, components, progressive } or undef.
sub jpeg_info {
    my $b = shift;
    return undef unless defined $b && length $b >= 4
        && substr($b, 0, 2) eq "\xff\xd8";
    my $pos = 2;
    while ($pos + 4 <= length $b) {
        if (ord substr($b, $pos, 1) != 0xff) {
            $pos++;
            next;
        }
        my $marker = ord substr($b, $pos + 1, 1);
        if ($marker == 0xff) { $pos++; next }              # fill byte
        if ($marker == 0xd8 || $marker == 0x01
            || ($marker >= 0xd0 && $marker <= 0xd7))
        {
            $pos += 2;
            next;
        }
        my $len = unpack('n', substr($b, $pos + 2, 2));
        # SOF0..SOF15 except DHT (c4), JPG (c8) and DAC (cc).
        if ($marker >= 0xc0 && $marker <= 0xcf
            && $marker != 0xc4 && $marker != 0xc8 && $marker != 0xcc)
        {
            my ($h, $w, $n) = unpack('nnC', substr($b, $pos + 5, 5));
            return { width => $w, height => $h, components => $n,
                     progressive => ($marker == 0xc2 ? 1 : 0) };
        }
        return undef if $marker == 0xda;                   # SOS before SOF
        $pos += 2 + $len;
    }
    return undef;
}

# Dispatch on the magic bytes: returns the matching *_info hash with an
# added "type" of 'webp', 'png' or 'jpeg', or undef.
sub image_info {
    my $b = shift;
    return undef unless defined $b;
    if (my $i = webp_info($b)) { return { %$i, type => 'webp' } }
    if (my $i = png_info($b))  { return { %$i, type => 'png' } }
    if (my $i = jpeg_info($b)) { return { %$i, type => 'jpeg' } }
    return undef;
}

1;
