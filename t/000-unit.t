# Unit tests that need no nginx: the image header parsers of
# t/lib/SmartImaging.pm, and (when our own harness is the one loaded) the
# HTTP response parsing of t/lib/Test/Nginx/Socket.pm.
#
#   prove -I t/lib t/000-unit.t

use strict;
use warnings;

use Compress::Zlib ();
use Test::More;

use SmartImaging qw(webp_info png_info jpeg_info image_info);

sub unhex { my $h = shift; $h =~ s/\s+//g; return pack 'H*', $h }

# 37x23 images written by cwebp 1.2.4 (from the PNGs built below).
my %webp = (
    lossless => unhex(<<'_HEX_'),
524946463a000000574542505650384c2d0000002f2480050009802006fc2f5b88e87fda0220
08ffe31622fa9f06226d9be2fb573d7a320603181340250792470000
_HEX_
    lossless_alpha => unhex(<<'_HEX_'),
5249464650000000574542505650384c440000002f248005104d004452fb7baf10d1ffb48540
20c99f729b15c6a3e0fd4f3350dab61114dcfd476eefa347c6404890f0dbe91605691bb0a8bb
130062e7b7f45d4070f21100
_HEX_
    lossy => unhex(<<'_HEX_'),
52494646b60000005745425056503820aa0000001007009d012a250017003e5d208d45b9a221
1d5e64019805c4b4004e9942381bd03cc12b0d30ec4041fd2bbfe23e87b7b053fb71f5c8e1f8
52d7e0e21a19d4ff0000fefde4b7124d3de58540bd91d227c1a89e3ffce48ea5160fc92f2e6c
4aad07a80a6b0cdb620b08e82dd846f7d601471b65a39f6ff282c34e25267aceb3e63cd5747b
d91b0507ff663c00902fda587bfb8616bd614f3d046014fe59584aac92d463ed5bbbe79b1000
_HEX_
    lossy_alpha => unhex(<<'_HEX_'),
52494646e600000057454250565038580a00000010000000240000160000414c504815000000
01998ce87f40484048feef5695880998002a8959000056503820aa000000b005009d012a2500
17003e61289045b822a19aadfe01800604b4004e9942381bd43cc12b7d30ec8002cb7f8e7ab4
6594c7b1d14fff5000fefd673b7e642e67ca9df8410511c3bfff336ffc0418ad5e7362646b72
96b4ec574fbfc3d69bfc697c063c53e530c30ee34fc7908c7c2a7dd5e276629983d1ebadf0cb
7066280701498dda087dcfbcdfa40ee8b7caf32795791512bcb862624ecf3392a1098d0f9545
02bc37e0f7e504b18000
_HEX_
);

my %want = (
    lossless       => ['lossless', 0, 0, ['VP8L']],
    lossless_alpha => ['lossless', 1, 0, ['VP8L']],
    lossy          => ['lossy',    0, 0, ['VP8 ']],
    lossy_alpha    => ['lossy',    1, 1, ['VP8X', 'ALPH', 'VP8 ']],
);

for my $k (sort keys %webp) {
    my $i = webp_info($webp{$k});
    my ($format, $alpha, $extended, $chunks) = @{ $want{$k} };
    ok($i, "$k: is webp") or next;
    is($i->{format}, $format, "$k: format");
    is("$i->{width}x$i->{height}", '37x23', "$k: dimensions");
    is($i->{alpha}, $alpha, "$k: alpha");
    is($i->{extended}, $extended, "$k: extended");
    is_deeply($i->{chunks}, $chunks, "$k: chunks");
    is($i->{size_ok}, 1, "$k: RIFF size matches");
    is(image_info($webp{$k})->{type}, 'webp', "$k: image_info type");
}

{
    my $cut = substr($webp{lossy}, 0, 100);
    my $i = webp_info($cut);
    is($i->{size_ok}, 0, 'truncated webp: RIFF size mismatch detected');
    is(webp_info("RIFF\0\0\0\0WAVEfmt \0\0\0\0"), undef,
       'RIFF/WAVE is not webp');
    is(webp_info("\xff\xd8\xff\xe0"), undef, 'jpeg bytes are not webp');
}

# PNG: build real files with zlib.
sub png_chunk {
    my ($type, $data) = @_;
    return pack('N', length $data) . $type . $data
         . pack('N', Compress::Zlib::crc32($type . $data));
}

sub make_png {
    my ($w, $h, $ctype, $bpp, $trns) = @_;
    my $raw = join '', map { "\0" . ("\x80" x ($w * $bpp)) } 1 .. $h;
    return "\x89PNG\r\n\x1a\n"
        . png_chunk('IHDR', pack('NNCCCCC', $w, $h, 8, $ctype, 0, 0, 0))
        . ($trns ? png_chunk('tRNS', "\0\0\0\0\0\0") : '')
        . png_chunk('IDAT', Compress::Zlib::compress($raw))
        . png_chunk('IEND', '');
}

{
    my $i = png_info(make_png(37, 23, 2, 3));
    is_deeply([@$i{qw(width height color_type alpha)}], [37, 23, 2, 0],
              'png rgb');
    $i = png_info(make_png(5, 7, 6, 4));
    is_deeply([@$i{qw(width height color_type alpha)}], [5, 7, 6, 1],
              'png rgba');
    $i = png_info(make_png(5, 7, 2, 3, 1));
    is($i->{alpha}, 1, 'png rgb + tRNS has alpha');
    is(image_info(make_png(1, 1, 0, 1))->{type}, 'png', 'png image_info');
    is(png_info('GIF89a' . ("\0" x 40)), undef, 'gif is not png');
}

# JPEG: markers only (SOI, APP0, DQT-ish filler, SOF0 / SOF2).
{
    my $app0 = "\xff\xe0" . pack('n', 16) . "JFIF\0\x01\x01\0\0\x01\0\x01\0\0";
    my $sof0 = "\xff\xc0" . pack('n', 17) . pack('CnnC', 8, 480, 640, 3)
             . ("\x01\x22\x00" x 3);
    my $i = jpeg_info("\xff\xd8" . $app0 . $sof0 . "\xff\xda");
    is_deeply([@$i{qw(width height components progressive)}],
              [640, 480, 3, 0], 'jpeg baseline SOF0');
    (my $sof2 = $sof0) =~ s/^\xff\xc0/\xff\xc2/;
    $i = jpeg_info("\xff\xd8" . $app0 . $sof2);
    is($i->{progressive}, 1, 'jpeg progressive SOF2');
    is(image_info("\xff\xd8" . $sof0)->{type}, 'jpeg', 'jpeg image_info');
    is(jpeg_info("\xff\xd8\xff\xda\0\x02"), undef, 'SOS before SOF');
}

# Response parsing of our harness (skipped under CPAN's Test::Nginx, whose
# internals differ).
SKIP: {
    my $ok = eval { require Test::Nginx::Socket; 1 }
             && Test::Nginx::Socket->can('_parse_response');
    skip 'not our Test::Nginx::Socket', 9 unless $ok;

    my $parse = \&Test::Nginx::Socket::_parse_response;

    my $r = $parse->("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                     . "X-A: 1\r\nX-A: 2\r\n\r\n"
                     . "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nT: x\r\n\r\n",
                     'GET');
    is($r->{body}, 'hello, world', 'chunked body decoded');
    is($r->{error}, undef, 'chunked: no error');
    is(Test::Nginx::Socket::header_value($r, 'x-a'), '1, 2',
       'repeated headers joined');

    $r = $parse->("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                  . "5\r\nhel", 'GET');
    like($r->{error}, qr/truncated/, 'truncated chunk detected');

    $r = $parse->("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                  'GET');
    like($r->{error}, qr/truncated body/, 'short Content-Length body');

    $r = $parse->("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nlonger",
                  'GET');
    like($r->{error}, qr/extra/, 'bytes beyond Content-Length');

    $r = $parse->("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", 'HEAD');
    is($r->{body} . ($r->{error} // ''), '', 'HEAD: no body expected');

    $r = $parse->("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", 'GET');
    is($r->{status}, 304, '304 parsed');

    $r = $parse->("garbage\r\n\r\n", 'GET');
    like($r->{error}, qr/bad status line/, 'bad status line');
}

done_testing();
