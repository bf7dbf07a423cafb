package SmartImaging;

# Helpers shared by the smart-imaging .t files: reading sample images,
# building "--- user_files eval" values, the preamble every module suite
# shares (samples or skip, MIME types, default sections, the "--- webp:"
# check), and parsing WebP / JPEG / PNG headers so tests can check
# dimensions and alpha without an image library.
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
    crc32 png_chunk make_png png_bomb noise_bytes noise_png tiny_gif
    jpeg_sof_offset jpeg_with_size webp_body_check body_sizes_check
    gradient_png image_body_check add_image_check
    default_samples require_samples types_config static_location
    static_defaults set_defaults stash_in_temp add_block_defaults headers_like
    add_webp_check
    image_format bmp_size find_program reference_decode
    decode_body_check add_decode_check
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
# The preamble of the module suites
# ---------------------------------------------------------------------------

# A function the calling .t file imported from Test::Nginx::Socket (ours or
# CPAN's), looked up in the package of whoever called our caller.
sub _test_function {
    my $fn = shift;
    my $pkg = caller(1);
    my $code = $pkg->can($fn)
        or die "SmartImaging: $pkg has no $fn() (use Test::Nginx::Socket"
             . " first)\n";
    return $code;
}

# The samples that stand in for "a JPEG" and "a PNG": served name => sample
# name, as a list for "my %Samples = SmartImaging::default_samples();".
sub default_samples {
    return (
        'sample.jpg' => 'sk_astronaut.jpg',         # 512x512, 53962 bytes
        'sample.png' => 'dolphin_default_ui.png',   # 755x532, 58053 bytes
    );
}

# Given { served name => sample name }, skips the whole file (the caller's
# "plan skip_all") unless every sample exists, and returns
# { served name => the sample's bytes }.
sub require_samples {
    my $map = shift;
    my @names = sort values %$map;
    if (!have_samples(@names)) {
        _test_function('plan')->(
            skip_all => "sample images (@names) missing in " . samples_dir());
    }
    return { map { $_ => slurp(sample_path($map->{$_})) } keys %$map };
}

# The generated nginx.conf has no mime.types: without a types block every
# file would be served as text/plain (default_type).  For http_config.
sub types_config {
    return <<'_EOC_';
    types {
        text/plain  txt;
        image/jpeg  jpg jpeg;
        image/png   png;
    }
_EOC_
}

# The default "--- config": html/ served with the module on.
sub static_location {
    return <<'_EOC_';
    location / {
        root $TEST_NGINX_HTML_DIR;
        smart_imaging on;
    }
_EOC_
}

# Defaults for a block that requests files from html/: the MIME types as
# http_config and static_location() as config.
sub static_defaults {
    return (http_config => types_config(), config => static_location());
}

# For add_block_preprocessor subs: gives $block each of %sections it does
# not have (an undefined section).  An array value (user_files) is copied
# for each block.  Then stash_in_temp($block).
sub set_defaults {
    my ($block, %sections) = @_;
    for my $section (sort keys %sections) {
        next if defined $block->$section;
        my $value = $sections{$section};
        $block->set_value($section,
                          ref $value eq 'ARRAY' ? [@$value] : $value);
    }
    stash_in_temp($block);
}

# The module creates its stash directory at startup, by default
# "smart_imaging_stash" in nginx's prefix: the server root.  The real
# Test::Nginx (and ours, like it) recreates the server root for each block
# and stops the run when it holds anything but conf/, logs/, html/, cache/,
# *_cache and *_temp: so every block that has no smart_imaging_stash_path
# of its own in http_config gets one named *_temp, at http level.
our $StashPath = 'smart_imaging_stash_temp';

sub stash_in_temp {
    my $block = shift;
    my $http = $block->http_config;
    $http = '' unless defined $http;
    return if $http =~ /\bsmart_imaging_stash_path\b/;
    $block->set_value('http_config',
                      "    smart_imaging_stash_path $StashPath;\n$http");
}

# set_defaults() for every block, with the caller's
# add_block_preprocessor().  Later pairs win:
#
#     SmartImaging::add_block_defaults(SmartImaging::static_defaults(),
#                                      user_files => \@Files);
sub add_block_defaults {
    my %sections = @_;
    _test_function('add_block_preprocessor')->(sub {
        set_defaults(shift, %sections);
    });
}

# "--- response_headers_like" from exact header lines and regex lines.
# Test::Nginx checks "--- response_headers_like" only in a block without
# "--- response_headers" (one or the other), so a block that wants both
# gives both here:
#
#     --- response_headers_like eval
#     SmartImaging::headers_like("Content-Type: image/webp\n!Cache-Control\n",
#                                "ETag: W/\".*\"\n")
#
# $exact: "Name: value" lines (the value matched literally, whole) and
# "!Name" lines (absent, or empty: "Name:" in response_headers_like);
# $like: lines as response_headers_like takes them (a regex matched against
# the whole value).  Either may be an array ref (one element per request,
# as in "--- request eval" arrays), then so is the result.
sub headers_like {
    my ($exact, $like) = @_;
    if (ref $exact eq 'ARRAY' || ref $like eq 'ARRAY') {
        my $n = ref $exact eq 'ARRAY' ? @$exact : @$like;
        return [map {
            headers_like(ref $exact eq 'ARRAY' ? $exact->[$_] : $exact,
                         ref $like eq 'ARRAY' ? $like->[$_] : $like)
        } 0 .. $n - 1];
    }
    # A name given twice would be checked once (the last line wins).
    my %seen;
    for my $line (split /\n/, ($exact // '') . "\n" . ($like // '')) {
        next unless $line =~ /^\s*!?\s*([^:\s]+)/;
        die "headers_like: $1 given twice\n" if $seen{lc $1}++;
    }
    my $out = '';
    for my $line (split /\n/, $exact // '') {
        next unless $line =~ /\S/;
        if ($line =~ /^\s*!\s*(\S+)/) {
            # "Name:" (empty) is what "!Name" is in response_headers_like,
            # without the real Test::Nginx's "uninitialized value" warning.
            $out .= "$1:\n";
        } elsif ($line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/) {
            $out .= "$1: \Q$2\E\n";
        } else {
            die "headers_like: bad header line '$line'\n";
        }
    }
    $out .= $like // '';
    $out .= "\n" if length $out && $out !~ /\n\z/;
    return $out;
}

# Implements the "--- webp: SPEC" section (see webp_body_check below) with
# the caller's add_response_body_check().  %$names maps served names to
# sample names, as for require_samples().
sub add_webp_check {
    my ($names, %opt) = @_;
    _test_function('add_response_body_check')->(
        webp_body_check($names, %opt));
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

# ---------------------------------------------------------------------------
# Building test images (for the failure suites)
# ---------------------------------------------------------------------------

# CRC-32 (ISO-HDLC, as PNG uses it), computed in Perl.
my @Crc32Table = map {
    my $c = $_;
    $c = ($c & 1) ? (0xEDB88320 ^ ($c >> 1)) : ($c >> 1) for 1 .. 8;
    $c;
} 0 .. 255;

sub crc32 {
    my $data = shift;
    my $crc = 0xFFFFFFFF;
    for my $byte (unpack 'C*', $data) {
        $crc = $Crc32Table[($crc ^ $byte) & 0xFF] ^ ($crc >> 8);
    }
    return $crc ^ 0xFFFFFFFF;
}

# One PNG chunk: length, type, data, CRC of type + data.
sub png_chunk {
    my ($type, $data) = @_;
    $data = '' unless defined $data;
    return pack('N', length $data) . $type . $data
         . pack('N', crc32($type . $data));
}

# A PNG file.  %opt: width, height, depth (8), color_type (0 = gray),
# and either idat (the compressed data, as is) or rows (the filtered
# scanlines, compressed here with zlib).  Extra chunks: chunks => [[type,
# data], ...] placed between IHDR and IDAT.
sub make_png {
    my %opt = @_;
    require Compress::Zlib;
    my $ihdr = pack 'NNCCCCC', $opt{width}, $opt{height},
                               $opt{depth} // 8, $opt{color_type} // 0,
                               0, 0, 0;
    my $idat = defined $opt{idat} ? $opt{idat}
             : Compress::Zlib::compress($opt{rows} // '', 9);
    return "\x89PNG\r\n\x1a\n"
         . png_chunk('IHDR', $ihdr)
         . join('', map { png_chunk(@$_) } @{ $opt{chunks} || [] })
         . png_chunk('IDAT', $idat)
         . png_chunk('IEND', '');
}

# A decompression bomb: a valid 8-bit gray PNG header claiming
# $width x $height pixels, whose IDAT holds one row of zeros (a few dozen
# bytes).
sub png_bomb {
    my ($width, $height) = @_;
    return make_png(width => $width, height => $height,
                    rows => "\0" x ($width + 1));
}

# $n deterministic pseudo-random bytes (xorshift32 from $seed).
sub noise_bytes {
    my ($seed, $n) = @_;
    my $x = ($seed || 1) & 0xFFFFFFFF;
    my $out = '';
    while (length $out < $n) {
        $x ^= ($x << 13) & 0xFFFFFFFF;
        $x ^= $x >> 17;
        $x ^= ($x << 5) & 0xFFFFFFFF;
        $out .= pack 'V', $x;
    }
    return substr $out, 0, $n;
}

# A $width x $height 1-bit gray PNG of random noise: it does not compress,
# and no lossy encoder makes it smaller either.
sub noise_png {
    my ($width, $height, $seed) = @_;
    my $row_bytes = int(($width + 7) / 8);
    my $noise = noise_bytes($seed // 1, $row_bytes * $height);
    my $rows = join '', map { "\0" . substr($noise, $_ * $row_bytes,
                                            $row_bytes) } 0 .. $height - 1;
    return make_png(width => $width, height => $height, depth => 1,
                    color_type => 0, rows => $rows);
}

# A 1x1 GIF89a (a white pixel).
sub tiny_gif {
    return "GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00"
         . "\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";
}

# Offset of the first SOFn marker (0xFF byte) of a JPEG, or undef.
sub jpeg_sof_offset {
    my $b = shift;
    my $pos = 2;
    while ($pos + 4 <= length $b) {
        return undef if ord substr($b, $pos, 1) != 0xff;
        my $marker = ord substr($b, $pos + 1, 1);
        if ($marker == 0xff) { $pos++; next }
        return $pos if $marker >= 0xc0 && $marker <= 0xcf
                    && $marker != 0xc4 && $marker != 0xc8 && $marker != 0xcc;
        return undef if $marker == 0xda;
        $pos += 2 + unpack('n', substr($b, $pos + 2, 2));
    }
    return undef;
}

# The JPEG $b with the dimensions in its SOF changed to $width x $height.
sub jpeg_with_size {
    my ($b, $width, $height) = @_;
    my $sof = jpeg_sof_offset($b);
    die "no SOF marker\n" unless defined $sof;
    substr($b, $sof + 5, 4) = pack 'nn', $height, $width;
    return $b;
}

# ---------------------------------------------------------------------------
# Response body check for "--- webp: ..." sections
# ---------------------------------------------------------------------------

# Returns a sub for add_response_body_check() (add_webp_check() registers
# it).  A block with a "--- webp: SPEC" section must get a well-formed WebP
# body (RIFF size equal to the body length) with the expected dimensions.
# SPEC is "WxH", or the name of a file whose dimensions are expected: a key
# of %$names (mapping served names to sample names, e.g. 'sample.jpg' =>
# 'sk_astronaut.jpg') or a sample name.  Add "alpha" / "opaque" to SPEC to
# check the alpha flag.  "--- webp eval" may give an array: one SPEC (or
# undef: no check) for each request of the block.
#
# Tests for each checked body: "body is a WebP file", "RIFF size matches",
# "WebP dimensions" and one per flag; the ones after the first are skipped
# when the body is no WebP file at all.  With complete => 1 the first two
# are a single "body is a complete WebP file" test.
sub webp_body_check {
    my ($names, %opt) = @_;
    $names ||= {};
    require Test::More;
    return sub {
        my ($block, $body, $req_idx, $rep, $dry_run) = @_;
        return unless $block->can('webp');
        my $spec = $block->webp;
        return unless defined $spec;
        $spec = $spec->[$req_idx] if ref $spec eq 'ARRAY';
        return unless defined $spec;
        $spec =~ s/^\s+|\s+$//g;
        my ($dims, @flags) = split ' ', $spec;
        my $name = $block->name . " (req $req_idx, repeat $rep)";

        my $want;
        if ($dims =~ /^(\d+)x(\d+)$/) {
            $want = "$1x$2";
        } else {
            my $src = $names->{$dims} // $dims;
            my $orig = image_info(slurp(sample_path($src)));
            die "cannot read the dimensions of $src\n" unless $orig;
            $want = "$orig->{width}x$orig->{height}";
        }

        my $info = webp_info($body);
        my $ok = $opt{complete}
            ? Test::More::ok($info && $info->{size_ok},
                             "$name - body is a complete WebP file")
            : Test::More::ok($info, "$name - body is a WebP file");
        if (!$ok && !$info) {
            Test::More::diag('    body starts with '
                             . unpack('H32', $body // ''));
        } elsif (!$ok) {
            Test::More::diag("    RIFF size $info->{riff_size} + 8, body "
                             . length($body) . ' bytes');
        }
        SKIP: {
            Test::More::skip("$name - not a WebP body",
                             ($opt{complete} ? 1 : 2) + @flags)
                unless $info;
            Test::More::is($info->{size_ok}, 1,
                           "$name - RIFF size matches the body length")
                unless $opt{complete};
            Test::More::is("$info->{width}x$info->{height}", $want,
                           "$name - WebP dimensions");
            for my $flag (@flags) {
                Test::More::is($info->{alpha}, $flag eq 'alpha' ? 1 : 0,
                               "$name - WebP $flag");
            }
        }
    };
}

# Returns a sub for add_response_body_check() comparing the bodies of the
# requests of one block (a "--- request eval" array).  A block with a
# "--- body_sizes: 0 < 1 = 2" section must get, once its last request is
# answered, a body for request 0 shorter than request 1's, and request 1's
# body byte-identical to request 2's.  Operators: "<", ">" (length) and
# "=" (same bytes), between request indexes.
sub body_sizes_check {
    require Test::More;
    my %bodies;
    return sub {
        my ($block, $body, $req_idx, $rep, $dry_run) = @_;
        return unless $block->can('body_sizes');
        my $spec = $block->body_sizes;
        return unless defined $spec;
        my $name = $block->name;
        my $reqs = ref $block->request eq 'ARRAY'
                 ? scalar @{ $block->request } : 1;
        $bodies{$name} = [] if $req_idx == 0;
        $bodies{$name}[$req_idx] = $body // '';
        return unless $req_idx == $reqs - 1;

        my @t = split ' ', $spec;
        die "$name - bad body_sizes '$spec'\n"
            unless @t >= 3 && @t % 2 == 1;
        my $got = $bodies{$name};
        for (my $i = 0; $i + 2 < @t; $i += 2) {
            my ($a, $op, $b) = @t[$i .. $i + 2];
            die "$name - bad body_sizes '$spec'\n"
                unless $a =~ /^\d+$/ && $b =~ /^\d+$/ && $op =~ /^[<>=]$/
                    && $a < $reqs && $b < $reqs;
            my ($la, $lb) = (length $got->[$a], length $got->[$b]);
            my $what = "$name - body $a ($la bytes) $op body $b ($lb bytes)"
                       . " (repeat $rep)";
            if ($op eq '=') {
                Test::More::ok($got->[$a] eq $got->[$b], $what);
            } elsif ($op eq '<') {
                Test::More::ok($la < $lb, $what);
            } else {
                Test::More::ok($la > $lb, $what);
            }
        }
    };
}

# ---------------------------------------------------------------------------
# Sized images (for the size / DPR suites)
# ---------------------------------------------------------------------------

# A $width x $height 8-bit RGB PNG of smooth gradients (red and blue
# across, green down), or RGBA with alpha => 1 (alpha from opaque on the
# left to transparent on the right).  Lossy WebP makes it far smaller.
# Rows are built with string operations, so even 1632x1000 takes a
# fraction of a second.
sub gradient_png {
    my ($width, $height, %opt) = @_;
    my $ch = $opt{alpha} ? 4 : 3;
    my $wmax = $width > 1 ? $width - 1 : 1;
    my $hmax = $height > 1 ? $height - 1 : 1;
    # One row with green = 0; each row ORs its green in.
    my $template = pack 'C*', map {
        my $r = int($_ * 255 / $wmax);
        ($r, 0, 255 - $r, $opt{alpha} ? (255 - $r) : ());
    } 0 .. $width - 1;
    my $rows = '';
    for my $y (0 .. $height - 1) {
        my $green = ("\0" . chr(int($y * 255 / $hmax)) . ("\0" x ($ch - 2)))
                    x $width;
        $rows .= "\0" . ($template | $green);
    }
    return make_png(width => $width, height => $height, depth => 8,
                    color_type => $opt{alpha} ? 6 : 2, rows => $rows);
}

# Returns a sub for add_response_body_check() (add_image_check() registers
# it).  A block with a "--- image: TYPE WxH [alpha|opaque]" section must get
# a body of that type ("webp", "jpeg" or "png", from the magic bytes and the
# headers of the file) and dimensions, and, with a flag, with or without
# alpha.  "--- image eval" may give an array: one spec (or undef: no check)
# per request of the block.
#
# Tests for each checked body: "image type", "image dimensions" and one per
# flag.
sub image_body_check {
    require Test::More;
    return sub {
        my ($block, $body, $req_idx, $rep, $dry_run) = @_;
        return unless $block->can('image');
        my $spec = $block->image;
        return unless defined $spec;
        $spec = $spec->[$req_idx] if ref $spec eq 'ARRAY';
        return unless defined $spec;
        $spec =~ s/^\s+|\s+$//g;
        my ($type, $dims, @flags) = split ' ', $spec;
        die "bad image spec '$spec'\n"
            unless $type =~ /^(?:webp|jpeg|png)$/
                && defined $dims && $dims =~ /^\d+x\d+$/;
        my $name = $block->name . " (req $req_idx, repeat $rep)";
        my $info = image_info($body);
        Test::More::is($info ? $info->{type} : 'no image', $type,
                       "$name - image type")
            or Test::More::diag('    body starts with '
                                . unpack('H32', $body // ''));
        Test::More::is($info ? "$info->{width}x$info->{height}" : '', $dims,
                       "$name - image dimensions");
        for my $flag (@flags) {
            Test::More::is($info ? $info->{alpha} : undef,
                           $flag eq 'alpha' ? 1 : 0, "$name - image $flag");
        }
    };
}

# Implements the "--- image: TYPE WxH" section with the caller's
# add_response_body_check().
sub add_image_check {
    _test_function('add_response_body_check')->(image_body_check());
}

# ---------------------------------------------------------------------------
# Every served format: signatures, reference decoders, "--- decode:" check
# ---------------------------------------------------------------------------

# The format of $bytes from its signature: 'avif', 'webp', 'jp2', 'jxr',
# 'jpeg', 'png', or undef.
#   AVIF: an ISO BMFF 'ftyp' box whose major or a compatible brand is 'avif'
#   WebP: RIFF....WEBP
#   JP2:  the JPEG 2000 signature box (jP  \r\n\x87\n), ISO 15444-1 I.5.1
#   JXR:  'II' 0xBC and a version byte (ITU-T T.832 A.4 / HD Photo)
#   JPEG: FF D8 FF;  PNG: its 8-byte signature
sub image_format {
    my $b = shift;
    return undef unless defined $b && length $b >= 12;
    if (substr($b, 4, 4) eq 'ftyp') {
        my $size = unpack 'N', substr($b, 0, 4);
        $size = length $b if $size > length $b;
        # major brand, minor version, compatible brands
        my @brands = map { substr($b, $_, 4) }
                     grep { $_ != 12 } map { 4 * $_ } 2 .. int($size / 4) - 1;
        return grep({ $_ eq 'avif' || $_ eq 'avis' } @brands) ? 'avif'
                                                               : undef;
    }
    return 'webp' if substr($b, 0, 4) eq 'RIFF' && substr($b, 8, 4) eq 'WEBP';
    return 'jp2'  if substr($b, 0, 12) eq "\0\0\0\x0cjP  \r\n\x87\n";
    return 'jxr'  if substr($b, 0, 3) eq "II\xbc"
                  && ord(substr($b, 3, 1)) <= 1;
    return 'jpeg' if substr($b, 0, 3) eq "\xff\xd8\xff";
    return 'png'  if substr($b, 0, 8) eq "\x89PNG\r\n\x1a\n";
    return undef;
}

# Width and height of a BMP (what JxrDecApp writes), or ().
sub bmp_size {
    my $b = shift;
    return () unless defined $b && length $b >= 26 && substr($b, 0, 2) eq 'BM';
    my ($w, $h) = unpack 'l<l<', substr($b, 18, 8);
    return (abs $w, abs $h);
}

# Where a program is on $PATH, or undef.
sub find_program {
    my $name = shift;
    for my $dir (split /:/, ($ENV{PATH} || '')) {
        my $p = File::Spec->catfile($dir, $name);
        return $p if -f $p && -x _;
    }
    return undef;
}

# The Debian reference decoder of each format (package in the comment),
# as [program, input suffix, output suffix, sub(in, out) -> argv].
our %Decoders = (
    avif => ['avifdec', 'avif', 'png',                     # libavif-bin
             sub { ('avifdec', $_[0], $_[1]) }],
    webp => ['dwebp', 'webp', 'png',                       # webp
             sub { ('dwebp', $_[0], '-o', $_[1]) }],
    jp2  => ['opj_decompress', 'jp2', 'png',               # libopenjp2-tools
             sub { ('opj_decompress', '-i', $_[0], '-o', $_[1]) }],
    jxr  => ['JxrDecApp', 'jxr', 'bmp',                    # libjxr-tools
             sub { ('JxrDecApp', '-i', $_[0], '-o', $_[1]) }],
);

# Decodes $bytes as $format with its reference decoder (%Decoders) in a
# temporary directory.  Returns a hash ref: skip => reason (no decoder for
# the format, or the program is missing), or ok => 1|0, width, height,
# program, output => what the program printed.
sub reference_decode {
    my ($bytes, $format) = @_;
    my $d = $Decoders{$format}
        or return { skip => "no reference decoder for $format" };
    my ($prog, $in_ext, $out_ext, $argv) = @$d;
    find_program($prog)
        or return { skip => "$prog not installed" };
    require File::Temp;
    require POSIX;
    my $dir = File::Temp::tempdir('smart-imaging-decode-XXXXXX',
                                  TMPDIR => 1, CLEANUP => 1);
    my $in  = File::Spec->catfile($dir, "in.$in_ext");
    my $out = File::Spec->catfile($dir, "out.$out_ext");
    my $log = File::Spec->catfile($dir, 'log');
    open my $fh, '>:raw', $in or die "cannot write $in: $!\n";
    print {$fh} $bytes;
    close $fh or die "cannot write $in: $!\n";

    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if (!$pid) {
        # The child must not run the parent's END blocks (Test::More).
        open STDOUT, '>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        { no warnings 'exec'; exec { $prog } $argv->($in, $out); }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    my $status = $?;
    my $output = -f $log ? slurp($log) : '';
    my %r = (program => $prog, output => $output, ok => 0);
    return \%r unless $status == 0 && -s $out;
    my $decoded = slurp($out);
    my ($w, $h);
    if ($out_ext eq 'png') {
        my $i = png_info($decoded) or return \%r;
        ($w, $h) = @$i{qw(width height)};
    } else {
        ($w, $h) = bmp_size($decoded) or return \%r;
    }
    @r{qw(ok width height)} = (1, $w, $h);
    return \%r;
}

# Returns a sub for add_response_body_check() (add_decode_check() registers
# it).  A block with a "--- decode: FORMAT DIMS" section must get a body
# with FORMAT's signature (image_format(): avif, webp, jp2, jxr, jpeg,
# png) that FORMAT's reference decoder (%Decoders: avifdec, dwebp,
# opj_decompress, JxrDecApp) decodes, to an image of DIMS: "WxH", or a
# served name of %$names / a sample name whose dimensions are expected.
# JPEG and PNG bodies are not decoded: their header gives the dimensions.
# "--- decode eval" may give an array: one spec (or undef: no check) per
# request of the block.
#
# Tests for each checked body: "FORMAT signature", "PROGRAM decodes it" and
# "decoded dimensions" (for JPEG/PNG: "dimensions" from the header).  The
# last two are skipped when the program is not installed.
sub decode_body_check {
    my ($names) = @_;
    $names ||= {};
    require Test::More;
    return sub {
        my ($block, $body, $req_idx, $rep, $dry_run) = @_;
        return unless $block->can('decode');
        my $spec = $block->decode;
        return unless defined $spec;
        $spec = $spec->[$req_idx] if ref $spec eq 'ARRAY';
        return unless defined $spec;
        $spec =~ s/^\s+|\s+$//g;
        my ($format, $dims) = split ' ', $spec;
        die "bad decode spec '$spec'\n"
            unless defined $dims
                && $format =~ /^(?:avif|webp|jp2|jxr|jpeg|png)$/;
        my $want;
        if ($dims =~ /^\d+x\d+$/) {
            $want = $dims;
        } else {
            my $src = $names->{$dims} // $dims;
            my $orig = image_info(slurp(sample_path($src)));
            die "cannot read the dimensions of $src\n" unless $orig;
            $want = "$orig->{width}x$orig->{height}";
        }
        my $name = $block->name . " (req $req_idx, repeat $rep)";
        $body //= '';

        my $got = image_format($body) // 'unknown';
        Test::More::is($got, $format, "$name - $format signature")
            or Test::More::diag('    body starts with '
                                . unpack('H32', $body));
        if ($format eq 'jpeg' || $format eq 'png') {
            my $i = image_info($body);
            Test::More::is($i ? "$i->{width}x$i->{height}" : '', $want,
                           "$name - dimensions");
            return;
        }
        my $r = reference_decode($body, $format);
        SKIP: {
            Test::More::skip("$name - $r->{skip}", 2) if $r->{skip};
            Test::More::ok($r->{ok}, "$name - $r->{program} decodes it")
                or Test::More::diag("    $r->{program}: $r->{output}");
            Test::More::is($r->{ok} ? "$r->{width}x$r->{height}" : '',
                           $want, "$name - decoded dimensions");
        }
    };
}

# Implements the "--- decode: FORMAT DIMS" section with the caller's
# add_response_body_check().
sub add_decode_check {
    my ($names) = @_;
    _test_function('add_response_body_check')->(decode_body_check($names));
}

1;
