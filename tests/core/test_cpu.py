"""The CPU record that timings carry: name, cores and the vector features that set kernel speed."""

from __future__ import annotations

from f2i_mobile.core.cpu import parse_cpuinfo

ZEN1 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx avx2 sha_ni\n\n" \
       "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 fma avx avx2 sha_ni\n"
GENOA = ZEN1.replace("avx2 sha_ni", "avx2 avx512f avx512_vnni avx512_bf16")
ARM = "processor\t: 0\nBogoMIPS\t: 38.40\nFeatures\t: fp asimd asimdhp asimddp i8mm sve\n"


def test_two_cpus_of_one_name_are_told_apart_by_their_features():
    zen1, genoa = parse_cpuinfo(ZEN1), parse_cpuinfo(GENOA)
    assert zen1.name == genoa.name == "AMD EPYC" and zen1.cores == 2
    assert zen1.features == ("fma", "avx2")
    assert genoa.features == ("fma", "avx2", "avx512f", "avx512_vnni", "avx512_bf16")
    assert "avx512_vnni" in genoa.describe() and "sha_ni" not in genoa.describe()


def test_arm_lists_its_features_as_features():
    arm = parse_cpuinfo(ARM)
    assert arm.features == ("asimd", "asimdhp", "asimddp", "i8mm", "sve") and arm.name == ""
